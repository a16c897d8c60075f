"""A simulated camera's ONVIF side: SOAP 1.2 over HTTP on its own loopback port, as an IP
camera serves it, for ONVIF clients written elsewhere (onvif-zeep-async among them).

Start the simulator and every camera has it (see `simulators.cameras`):

    python -m simulators.cameras --count 100 --username admin --password s3cret

Each camera's JSON line carries `"onvif": "http://127.0.0.1:<port>"`; the client starts
at `<that>/onvif/device_service` and follows the addresses the camera returns, all on the
same host and port:

- device (ver10): GetDeviceInformation (a maker, model, firmware, serial and hardware id
  per camera), GetSystemDateAndTime (UTC plus the camera's clock offset; answered without
  a login, as cameras do), GetCapabilities, GetServices, GetScopes, GetHostname;
- media (ver10): GetProfiles / GetProfile (`main` and `sub`, H.264 or H.265 as the camera
  streams), GetVideoSources, GetStreamUri (the camera's RTSP URL), GetSnapshotUri (a JPEG
  of what the camera shows now, at `/onvif/snapshot/<profile>.jpg`);
- events (ver10, `simulators.onvif_events`): GetEventProperties, GetServiceCapabilities,
  CreatePullPointSubscription, PullMessages (long poll), Renew, Unsubscribe,
  SetSynchronizationPoint, at `/onvif/subscription/<id>`.

Every other call needs a WS-Security UsernameToken (PasswordDigest or PasswordText) with the
camera's login, when it has one; a wrong one is the SOAP fault `ter:NotAuthorized` (HTTP
400). The snapshot URL takes HTTP Digest or Basic.

Control lines (the simulator's stdin, `<camera id|*> <fault> <value>`):

    cam-001 onvif malformed     replies that are not XML
    cam-001 onvif truncated     replies cut off half way
    cam-001 onvif fault         every call is a SOAP Fault (env:Receiver)
    cam-001 onvif down          the ONVIF port refuses connections
    cam-001 onvif no_events     no event service (old firmware): none listed, and its
                                calls are ter:ActionNotSupported
    cam-001 onvif ok            back to normal
    cam-001 clock_drift 300     the camera's clock is 300 s ahead (negative: behind)
    cam-001 token_window 5      refuse a token whose Created is over 5 s from the
                                camera's clock (`off`: take any, the default)
    cam-001 motion on|off       the MotionAlarm property
    cam-001 picture black       also raises ImageTooDark (blurred: ImageTooBlurry,
                                covered: GlobalSceneChange and tamper)
    cam-001 reboot 3            RTSP and ONVIF gone for 3 s; subscriptions are lost
    cam-001 status              subscriptions held, ONVIF mode, clock offset, ...
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
import secrets
import zlib
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree  # type: ignore[import-untyped]

from drivers.rtsp.auth import expected_digest, parse_challenge
from simulators.onvif_events import (
    DEFAULT_TERMINATION_S,
    TOPICS,
    CameraClock,
    EventSource,
    Subscription,
    parse_duration,
    parse_termination,
    xml_time,
)

if TYPE_CHECKING:
    from simulators.camera_clips import ClipSpec
    from simulators.cameras import Camera, Stream

log = logging.getLogger("simulators.onvif")

ENV = "http://www.w3.org/2003/05/soap-envelope"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TEV = "http://www.onvif.org/ver10/events/wsdl"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_NAMESPACES = {
    "env": ENV, "tt": "http://www.onvif.org/ver10/schema", "tds": TDS, "trt": TRT,
    "tev": TEV, "wsnt": WSNT, "wsa": "http://www.w3.org/2005/08/addressing",
    "tns1": "http://www.onvif.org/ver10/topics", "ter": "http://www.onvif.org/ver10/error",
    "wstop": "http://docs.oasis-open.org/wsn/t-1", "wsrf-r": "http://docs.oasis-open.org/wsrf/r-2",
}
_ENVELOPE = ('<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope '
             + " ".join(f'xmlns:{p}="{u}"' for p, u in _NAMESPACES.items())
             + "><env:Body>{body}</env:Body></env:Envelope>")
_SOAP = "application/soap+xml"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_MAX_BODY = 256 * 1024
ONVIF_MODES = ("ok", "malformed", "truncated", "fault", "down", "no_events")
_OPEN = frozenset({(TDS, "GetSystemDateAndTime")})  # answered without a login
_MODELS = (("Furong Vision", "FV-IPC-B2120"), ("Furong Vision", "FV-IPC-D4240"),
           ("Xiangjiang Optics", "XO-T5400-IR"), ("Xiangjiang Optics", "XO-B3200"))
_H264_PROFILES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High"}
_JPEGS: dict[ClipSpec, bytes] = {}  # one JPEG per picture, shared by every camera


class SoapFault(Exception):
    def __init__(self, status: int, code: str, subcode: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.subcode, self.reason = status, code, subcode, reason

    def xml(self) -> str:
        return _ENVELOPE.format(body=(
            f"<env:Fault><env:Code><env:Value>env:{self.code}</env:Value>"
            f"<env:Subcode><env:Value>{self.subcode}</env:Value></env:Subcode></env:Code>"
            f'<env:Reason><env:Text xml:lang="en">{escape(self.reason)}</env:Text>'
            "</env:Reason></env:Fault>"))


def _text(el: etree._Element, name: str) -> str | None:
    for child in el.iter():
        if isinstance(child.tag, str) and etree.QName(child).localname == name:
            return (child.text or "").strip()
    return None


def snapshot_jpeg(stream: Stream) -> bytes:
    """The stream's first picture as a JPEG: its keyframe decoded (PyAV), then encoded
    (OpenCV). Cached per clip, so a picture is encoded once for every camera."""
    spec = stream.clip.spec
    found = _JPEGS.get(spec)
    if found is not None:
        return found
    import av
    import cv2

    ctx = av.CodecContext.create("h264" if spec.codec == "h264" else "hevc", "r")
    pictures = []
    for nals in stream.clip.frames[: spec.fps]:
        data = b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)
        pictures += ctx.decode(av.Packet(data))
        if pictures:
            break
    if not pictures:
        pictures = ctx.decode(None)
    if not pictures:
        raise RuntimeError(f"no picture decoded from {spec.key}")
    bgr = pictures[0].to_ndarray(format="bgr24")
    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {spec.key}")
    found = _JPEGS[spec] = jpeg.tobytes()
    return found


class OnvifDevice:
    """One camera's ONVIF service: device, media and events on one HTTP port."""

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.port = 0
        self.clock = CameraClock()
        self.video_source = "VideoSource_1"
        self.source_config = "VideoSourceConfig_1"
        self.events = EventSource(self.source_config, self.clock)
        self.requests: dict[str, int] = {}  # operation -> count
        self.refused_logins = 0
        self.bad_requests = 0  # not XML, or no SOAP Body: answered with a fault, counted
        # Some cameras refuse a token whose Created is this far from their own clock
        # (why clients measure the drift first); None: any Created is taken.
        self.token_window_s: float | None = None
        self._runner: web.AppRunner | None = None
        crc = zlib.crc32(camera.id.encode())
        self.manufacturer, self.model = _MODELS[crc % len(_MODELS)]
        self.firmware = f"V5.{crc % 7}.{crc % 13} build {200000 + crc % 99999}"
        digest = hashlib.sha1(camera.id.encode(), usedforsecurity=False).hexdigest().upper()
        self.serial = digest[:12]
        self.hardware_id = f"HW-{digest[12:20]}"

    # Where it is.
    @property
    def base_url(self) -> str:
        return f"http://{self.camera.host}:{self.port}"

    @property
    def device_url(self) -> str:
        return f"{self.base_url}/onvif/device_service"

    @property
    def subscriptions(self) -> int:
        """PullPoint subscriptions the camera holds now (a client that leaks one shows)."""
        return self.events.subscriptions

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_get("/onvif/snapshot/{profile}.jpg", self._snapshot)
        app.router.add_post("/{tail:.*}", self._soap)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5,
                               handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, self.camera.host, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]  # the same port again after a restart

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def set_mode(self, mode: str) -> None:
        self.camera.faults.onvif = mode
        if mode == "down":
            await self.stop()
        elif self._runner is None and not self.camera.rebooting:
            await self.start()

    def reboot(self) -> None:
        """Everything the ONVIF service held is gone (its port is stopped by the camera)."""
        self.events.forget_all()
        self.events.states = dict.fromkeys(TOPICS, False)
        self.events.show_picture(self.camera.faults.picture)

    def status(self) -> dict[str, object]:
        return {"onvif": self.camera.faults.onvif, "onvif_listening": self.running,
                "subscriptions": self.subscriptions,
                "subscriptions_created": self.events.created,
                "unsubscribed": self.events.unsubscribed, "expired": self.events.expired,
                "clock_offset_s": self.clock.offset_s, "token_window_s": self.token_window_s,
                "motion": self.events.states["motion"],
                "refused_logins": self.refused_logins, "bad_requests": self.bad_requests}

    # HTTP.
    async def _soap(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
            root = etree.fromstring(body, parser=_PARSER)
            ops = root.find(f"{{{ENV}}}Body")
            if ops is None or len(ops) == 0:
                self._bad_request("a request without a SOAP Body")
                raise SoapFault(400, "Sender", "ter:WellFormed", "no SOAP Body")
            call = ops[0]
            name = etree.QName(call)
            key = f"{name.localname}"
            self.requests[key] = self.requests.get(key, 0) + 1
            mode = self.camera.faults.onvif
            if mode == "malformed":
                return web.Response(body=b"\x00\xffHTTP/1.1 500 oops <html><b>not soap",
                                    content_type=_SOAP, status=200)
            if mode == "fault":
                raise SoapFault(500, "Receiver", "ter:Action", "simulated device failure")
            if (name.namespace, name.localname) not in _OPEN and not self._authorised(root):
                self.refused_logins += 1
                raise SoapFault(400, "Sender", "ter:NotAuthorized", "Sender not Authorized")
            reply = await self._call(name.namespace or "", name.localname, call, request)
            text = _ENVELOPE.format(body=reply)
            if mode == "truncated":  # cut off half way through the reply's body
                text = text[: text.index("<env:Body>") + 10 + len(reply) // 2]
            return web.Response(text=text, content_type=_SOAP, charset="utf-8")
        except etree.XMLSyntaxError:
            self._bad_request("a request that is not XML")
            fault = SoapFault(400, "Sender", "ter:WellFormed", "request is not XML")
        except SoapFault as err:
            fault = err
        return web.Response(text=fault.xml(), status=fault.status, content_type=_SOAP,
                            charset="utf-8")

    def _bad_request(self, what: str) -> None:
        if self.bad_requests == 0:
            log.warning("camera=%s onvif: %s; counted from now on", self.camera.id, what)
        self.bad_requests += 1

    def _authorised(self, root: etree._Element) -> bool:
        cam = self.camera
        if cam.faults.auth_fail:
            return False
        if cam.username is None:
            return True
        token = root.find(f".//{{{WSSE}}}UsernameToken")
        if token is None:
            return False
        user = token.findtext(f"{{{WSSE}}}Username") or ""
        password = token.find(f"{{{WSSE}}}Password")
        if password is None or not secrets.compare_digest(user, cam.username):
            return False
        given = (password.text or "").strip()
        want = cam.password or ""
        if password.get("Type", "").endswith("#PasswordDigest"):
            try:
                nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
            except ValueError:
                return False
            created = token.findtext(f"{{{WSU}}}Created") or ""
            if self.token_window_s is not None and not self._fresh(created):
                return False
            want = base64.b64encode(hashlib.sha1(
                nonce + created.encode() + want.encode(), usedforsecurity=False).digest()
            ).decode()
        return secrets.compare_digest(given, want)

    def _fresh(self, created: str) -> bool:
        try:
            when = dt.datetime.fromisoformat(created.strip().replace("Z", "+00:00"))
        except ValueError:
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        skew = abs((when - self.clock.now()).total_seconds())
        return self.token_window_s is None or skew <= self.token_window_s

    async def _snapshot(self, request: web.Request) -> web.Response:
        cam = self.camera
        if cam.faults.onvif in ("fault", "malformed"):
            return web.Response(status=500, text="snapshot failed")
        if not self._http_login(request):
            return web.Response(status=401, headers={"WWW-Authenticate": cam.challenge()
                                if cam.auth == "basic" else
                                f'Digest realm="{cam.id}", nonce="{cam.nonce}", qop="auth", '
                                'algorithm=MD5'})
        profile = request.match_info["profile"]
        if profile not in ("main", "sub"):
            return web.Response(status=404, text="no such profile")
        jpeg = await asyncio.to_thread(snapshot_jpeg, cam.showing())
        return web.Response(body=jpeg, content_type="image/jpeg")

    def _http_login(self, request: web.Request) -> bool:
        cam = self.camera
        if cam.faults.auth_fail:
            return False
        if cam.username is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(rest.strip(), validate=True).decode()
            except ValueError:
                return False
            return secrets.compare_digest(given, f"{cam.username}:{cam.password}")
        if scheme.lower() == "digest":
            try:
                params = parse_challenge(header).params
            except ValueError:
                return False
            if params.get("nonce") != cam.nonce or params.get("username") != cam.username:
                return False
            want = expected_digest(params, cam.password or "", request.method, cam.id)
            return secrets.compare_digest(params.get("response", ""), want)
        return False

    # SOAP operations.
    async def _call(self, ns: str, op: str, call: etree._Element,
                    request: web.Request) -> str:
        if ns == TDS:
            device = {
                "GetDeviceInformation": self._device_information,
                "GetSystemDateAndTime": self._system_date_and_time,
                "GetCapabilities": self._capabilities, "GetServices": self._services,
                "GetScopes": self._scopes, "GetHostname": self._hostname,
            }.get(op)
            if device is not None:
                return device()
        elif ns == TRT:
            media = {"GetProfiles": self._profiles, "GetProfile": self._profile,
                     "GetVideoSources": self._video_sources,
                     "GetStreamUri": self._stream_uri,
                     "GetSnapshotUri": self._snapshot_uri}.get(op)
            if media is not None:
                return media(call)
        elif ns == TEV and self.camera.faults.onvif == "no_events":
            pass  # an old firmware: no event service at all
        elif ns == TEV and op == "GetEventProperties":
            return self._event_properties()
        elif ns == TEV and op == "GetServiceCapabilities":
            return ('<tev:GetServiceCapabilitiesResponse><tev:Capabilities '
                    'WSSubscriptionPolicySupport="false" WSPullPointSupport="true" '
                    'WSPausableSubscriptionManagerInterfaceSupport="false" '
                    'MaxNotificationProducers="0" MaxPullPoints="10" '
                    'PersistentNotificationStorage="false"/>'
                    '</tev:GetServiceCapabilitiesResponse>')
        elif ns == TEV and op == "CreatePullPointSubscription":
            return self._create_pull_point(call)
        elif (ns, op) in ((TEV, "PullMessages"), (TEV, "SetSynchronizationPoint"),
                          (WSNT, "Renew"), (WSNT, "Unsubscribe")):
            sub = self._subscription(request)
            if op == "PullMessages":
                return await self._pull(sub, call)
            if op == "SetSynchronizationPoint":
                self.events.synchronize(sub)
                return "<tev:SetSynchronizationPointResponse/>"
            if op == "Renew":
                return self._renew(sub, call)
            self.events.unsubscribe(sub)
            return "<wsnt:UnsubscribeResponse/>"
        raise SoapFault(400, "Sender", "ter:ActionNotSupported",
                        f"{op} is not supported by this device")

    def _device_information(self) -> str:
        return ("<tds:GetDeviceInformationResponse>"
                f"<tds:Manufacturer>{escape(self.manufacturer)}</tds:Manufacturer>"
                f"<tds:Model>{escape(self.model)}</tds:Model>"
                f"<tds:FirmwareVersion>{escape(self.firmware)}</tds:FirmwareVersion>"
                f"<tds:SerialNumber>{self.serial}</tds:SerialNumber>"
                f"<tds:HardwareId>{self.hardware_id}</tds:HardwareId>"
                "</tds:GetDeviceInformationResponse>")

    def _system_date_and_time(self) -> str:
        utc = self.clock.now()
        local = utc + dt.timedelta(hours=8)  # the compound keeps China Standard Time

        def stamp(t: dt.datetime) -> str:
            return (f"<tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}</tt:Minute>"
                    f"<tt:Second>{t.second}</tt:Second></tt:Time><tt:Date><tt:Year>{t.year}"
                    f"</tt:Year><tt:Month>{t.month}</tt:Month><tt:Day>{t.day}</tt:Day>"
                    "</tt:Date>")

        return ("<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
                "<tt:DateTimeType>NTP</tt:DateTimeType>"
                "<tt:DaylightSavings>false</tt:DaylightSavings>"
                "<tt:TimeZone><tt:TZ>CST-8</tt:TZ></tt:TimeZone>"
                f"<tt:UTCDateTime>{stamp(utc)}</tt:UTCDateTime>"
                f"<tt:LocalDateTime>{stamp(local)}</tt:LocalDateTime>"
                "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>")

    def _capabilities(self) -> str:
        base = self.base_url
        return ("<tds:GetCapabilitiesResponse><tds:Capabilities>"
                f"<tt:Device><tt:XAddr>{base}/onvif/device_service</tt:XAddr></tt:Device>"
                + ("" if self.camera.faults.onvif == "no_events" else
                   f"<tt:Events><tt:XAddr>{base}/onvif/event_service</tt:XAddr>"
                   "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
                   "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
                   "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
                   "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>")
                + f"<tt:Media><tt:XAddr>{base}/onvif/media_service</tt:XAddr>"
                "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
                "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
                "</tt:StreamingCapabilities></tt:Media>"
                "</tds:Capabilities></tds:GetCapabilitiesResponse>")

    def _services(self) -> str:
        base = self.base_url
        rows = [(TDS, "device_service", 2, 60), (TRT, "media_service", 2, 60)]
        if self.camera.faults.onvif != "no_events":
            rows.append((TEV, "event_service", 2, 60))
        return ("<tds:GetServicesResponse>" + "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
            f"<tds:XAddr>{base}/onvif/{path}</tds:XAddr><tds:Version><tt:Major>{major}"
            f"</tt:Major><tt:Minor>{minor}</tt:Minor></tds:Version></tds:Service>"
            for ns, path, major, minor in rows) + "</tds:GetServicesResponse>")

    def scopes(self) -> list[str]:
        cam = self.camera
        return ["onvif://www.onvif.org/type/video_encoder",
                "onvif://www.onvif.org/Profile/Streaming",
                f"onvif://www.onvif.org/name/{cam.id}",
                f"onvif://www.onvif.org/location/{cam.location}",
                f"onvif://www.onvif.org/hardware/{self.model}"]

    def _scopes(self) -> str:
        rows = []
        for scope in self.scopes():
            kind = "Configurable" if "/name/" in scope or "/location/" in scope else "Fixed"
            rows.append(f"<tds:Scopes><tt:ScopeDef>{kind}</tt:ScopeDef>"
                        f"<tt:ScopeItem>{escape(scope)}</tt:ScopeItem></tds:Scopes>")
        return "<tds:GetScopesResponse>" + "".join(rows) + "</tds:GetScopesResponse>"

    def _hostname(self) -> str:
        return ("<tds:GetHostnameResponse><tds:HostnameInformation>"
                "<tt:FromDHCP>false</tt:FromDHCP>"
                f"<tt:Name>{escape(self.camera.id)}</tt:Name>"
                "</tds:HostnameInformation></tds:GetHostnameResponse>")

    # Media.
    def _profile_xml(self, profile: str, tag: str = "trt:Profiles") -> str:
        clip = self.camera.stream.clip
        spec = clip.spec
        encoding = "H264" if spec.codec == "h264" else "H265"
        sps = clip.parameter_sets().get(7, b"\x67\x42")
        h264 = (f"<tt:H264><tt:GovLength>{spec.fps}</tt:GovLength>"
                f"<tt:H264Profile>{_H264_PROFILES.get(sps[1], 'High')}</tt:H264Profile>"
                "</tt:H264>" if spec.codec == "h264" else "")
        token = profile
        name = "mainStream" if profile == "main" else "subStream"
        return (f'<{tag} token="{token}" fixed="true"><tt:Name>{name}</tt:Name>'
                f'<tt:VideoSourceConfiguration token="{self.source_config}">'
                "<tt:Name>VideoSourceConfig</tt:Name><tt:UseCount>2</tt:UseCount>"
                f"<tt:SourceToken>{self.video_source}</tt:SourceToken>"
                f'<tt:Bounds x="0" y="0" width="{spec.width}" height="{spec.height}"/>'
                "</tt:VideoSourceConfiguration>"
                f'<tt:VideoEncoderConfiguration token="VideoEncoder_{token}">'
                f"<tt:Name>VideoEncoder_{token}</tt:Name><tt:UseCount>1</tt:UseCount>"
                f"<tt:Encoding>{encoding}</tt:Encoding>"
                f"<tt:Resolution><tt:Width>{spec.width}</tt:Width>"
                f"<tt:Height>{spec.height}</tt:Height></tt:Resolution>"
                "<tt:Quality>4</tt:Quality>"
                f"<tt:RateControl><tt:FrameRateLimit>{spec.fps}</tt:FrameRateLimit>"
                "<tt:EncodingInterval>1</tt:EncodingInterval>"
                f"<tt:BitrateLimit>{spec.bitrate // 1000}</tt:BitrateLimit></tt:RateControl>"
                f"{h264}"
                "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type>"
                "<tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port>"
                "<tt:TTL>0</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
                "<tt:SessionTimeout>PT60S</tt:SessionTimeout>"
                f"</tt:VideoEncoderConfiguration></{tag}>")

    def _profiles(self, call: etree._Element) -> str:
        return ("<trt:GetProfilesResponse>" + self._profile_xml("main")
                + self._profile_xml("sub") + "</trt:GetProfilesResponse>")

    def _token(self, call: etree._Element) -> str:
        token = _text(call, "ProfileToken")
        if token not in ("main", "sub"):
            raise SoapFault(400, "Sender", "ter:InvalidArgVal",
                            f"no profile {token!r}")
        return token

    def _profile(self, call: etree._Element) -> str:
        return ("<trt:GetProfileResponse>"
                + self._profile_xml(self._token(call), "trt:Profile")
                + "</trt:GetProfileResponse>")

    def _video_sources(self, call: etree._Element) -> str:
        spec = self.camera.stream.clip.spec
        return (f'<trt:GetVideoSourcesResponse><trt:VideoSources token="{self.video_source}">'
                f"<tt:Framerate>{spec.fps}</tt:Framerate><tt:Resolution><tt:Width>"
                f"{spec.width}</tt:Width><tt:Height>{spec.height}</tt:Height>"
                "</tt:Resolution></trt:VideoSources></trt:GetVideoSourcesResponse>")

    def stream_url(self, profile: str) -> str:
        """The sub profile is the camera's RTSP URL; the main one the same stream under
        another path (the simulator serves one encoding)."""
        cam = self.camera
        return cam.url if profile == "sub" else f"rtsp://{cam.host}:{cam.port}/main"

    def snapshot_url(self, profile: str) -> str:
        return f"{self.base_url}/onvif/snapshot/{profile}.jpg"

    def _media_uri(self, tag: str, uri: str) -> str:
        return (f"<trt:{tag}><trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri>"
                "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
                "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
                f"<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:{tag}>")

    def _stream_uri(self, call: etree._Element) -> str:
        return self._media_uri("GetStreamUriResponse", self.stream_url(self._token(call)))

    def _snapshot_uri(self, call: etree._Element) -> str:
        return self._media_uri("GetSnapshotUriResponse",
                               self.snapshot_url(self._token(call)))

    # Events.
    def _event_properties(self) -> str:
        def topic(path: str, source: str) -> str:
            parts = path.split(":", 1)[1].split("/")
            inner = (
                '<tt:MessageDescription IsProperty="true"><tt:Source>'
                f'<tt:SimpleItemDescription Name="Source" Type="tt:{source}"/></tt:Source>'
                '<tt:Data><tt:SimpleItemDescription Name="State" Type="xs:boolean"/>'
                "</tt:Data></tt:MessageDescription>")
            xml = f'<tns1:{parts[-1]} wstop:topic="true">{inner}</tns1:{parts[-1]}>'
            for part in reversed(parts[:-1]):
                xml = f"<tns1:{part}>{xml}</tns1:{part}>"
            return xml

        topics = "".join(topic(path, "ReferenceToken") for path in TOPICS.values())
        return ("<tev:GetEventPropertiesResponse>"
                "<tev:TopicNamespaceLocation>http://www.onvif.org/onvif/ver10/topics/"
                "topicns.xml</tev:TopicNamespaceLocation>"
                "<wsnt:FixedTopicSet>true</wsnt:FixedTopicSet>"
                f"<wstop:TopicSet>{topics}</wstop:TopicSet>"
                "<wsnt:TopicExpressionDialect>http://www.onvif.org/ver10/tev/"
                "topicExpression/ConcreteSet</wsnt:TopicExpressionDialect>"
                "<wsnt:TopicExpressionDialect>http://docs.oasis-open.org/wsn/t-1/"
                "TopicExpression/Concrete</wsnt:TopicExpressionDialect>"
                "<tev:MessageContentFilterDialect>http://www.onvif.org/ver10/tev/"
                "messageContentFilter/ItemFilter</tev:MessageContentFilterDialect>"
                "<tev:MessageContentSchemaLocation>http://www.onvif.org/onvif/ver10/"
                "schema/onvif.xsd</tev:MessageContentSchemaLocation>"
                "</tev:GetEventPropertiesResponse>")

    def _termination(self, text: str | None) -> float:
        try:
            return parse_termination(text, self.clock.now())
        except ValueError as err:
            raise SoapFault(400, "Sender", "wsnt:UnacceptableInitialTerminationTimeFault",
                            str(err)) from None

    def _times(self, sub: Subscription, termination_first: bool = False) -> str:
        """The camera's time and the subscription's end, on its clock, in the order the
        reply's schema has them."""
        now = self.clock.now()
        left = sub.expires_at - asyncio.get_running_loop().time()
        current = f"<wsnt:CurrentTime>{xml_time(now)}</wsnt:CurrentTime>"
        end = (f"<wsnt:TerminationTime>{xml_time(now + dt.timedelta(seconds=left))}"
               "</wsnt:TerminationTime>")
        return end + current if termination_first else current + end

    def _create_pull_point(self, call: etree._Element) -> str:
        seconds = self._termination(_text(call, "InitialTerminationTime"))
        sub = self.events.create(seconds)
        return ("<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
                f"<wsa:Address>{self.base_url}/onvif/subscription/{sub.id}</wsa:Address>"
                f"</tev:SubscriptionReference>{self._times(sub)}"
                "</tev:CreatePullPointSubscriptionResponse>")

    def _subscription(self, request: web.Request) -> Subscription:
        sid = request.path.rstrip("/").rsplit("/", 1)[-1]
        sub = self.events.get(sid) if request.path.startswith("/onvif/subscription/") else None
        if sub is None:
            raise SoapFault(400, "Sender", "wsrf-r:ResourceUnknownFault",
                            "unknown or expired subscription")
        return sub

    async def _pull(self, sub: Subscription, call: etree._Element) -> str:
        try:
            timeout = parse_duration(_text(call, "Timeout") or "PT10S")
            limit = int(_text(call, "MessageLimit") or "1")
        except ValueError as err:
            raise SoapFault(400, "Sender", "ter:InvalidArgVal", str(err)) from None
        notes = await self.events.pull(sub, timeout, limit)
        if sub.gone:
            raise SoapFault(400, "Sender", "wsrf-r:ResourceUnknownFault",
                            "the subscription ended while waiting")
        now = self.clock.now()
        left = sub.expires_at - asyncio.get_running_loop().time()
        return ("<tev:PullMessagesResponse>"
                f"<tev:CurrentTime>{xml_time(now)}</tev:CurrentTime>"
                f"<tev:TerminationTime>{xml_time(now + dt.timedelta(seconds=left))}"
                "</tev:TerminationTime>" + "".join(n.xml() for n in notes)
                + "</tev:PullMessagesResponse>")

    def _renew(self, sub: Subscription, call: etree._Element) -> str:
        seconds = self._termination(_text(call, "TerminationTime") or
                                    f"PT{int(DEFAULT_TERMINATION_S)}S")
        self.events.renew(sub, seconds)
        return f"<wsnt:RenewResponse>{self._times(sub, True)}</wsnt:RenewResponse>"

    def __repr__(self) -> str:
        return f"OnvifDevice({self.camera.id}, {self.base_url})"

