"""Simulated CCTV cameras: RTSP servers over real sockets (OPTIONS, DESCRIBE, SETUP over
RTP/AVP/TCP interleaved, PLAY, GET_PARAMETER, TEARDOWN; Digest or Basic auth), serving a
looped H.264 or H.265 clip, many cameras in one process. Each camera also serves ONVIF
(device, media, snapshot, PullPoint events) on its own HTTP port (`simulators.onvif`), and
one WS-Discovery responder answers Probes for all of them (`simulators.ws_discovery`).
Each camera has faults a test can switch: stall, refuse, disconnect, auth failure, low fps,
garbage answers, oversized headers, absurd interleaved frame lengths, what the picture
shows (black, frozen, blurred, covered, night, moved), a reboot, clock drift, and ONVIF replies
that are malformed, truncated, faults, or a port that refuses.

    python -m simulators.cameras --count 100 --codec h264 [--username U --password P]
        [--discovery-port 0] [--discovery-multicast]

prints one JSON line per camera ({"id", "port", "url", "onvif"}: the RTSP port and URL,
the ONVIF base URL, whose device service is `<onvif>/onvif/device_service`), then
{"ready": N, "discovery": <UDP port on 127.0.0.1>}, then reads control lines on stdin,
`<camera id|*> <fault> <on|off|value>`, and answers each with one JSON line
({"control", "answer": "ok" or "error: ..."}):

    cam-003 stall on            RTP stops, the connection stays open
    cam-003 refuse on|off       the RTSP port refuses connections
    cam-003 disconnect now      every RTSP connection is dropped
    cam-003 auth_fail on|off    every login (RTSP, ONVIF, snapshot) is refused
    * low_fps 5                 frames per second sent (`off`: the clip's)
    cam-003 garbage|oversized|absurd_length on|off   RTSP answers that are not RTSP
    cam-007 picture black       scene, black, frozen, blurred, covered, night, moved
    cam-007 motion on|off       the ONVIF MotionAlarm event
    cam-007 clock_drift 300     the camera's clock, seconds ahead (negative: behind)
    cam-007 token_window 5      ONVIF tokens over 5 s from the camera's clock are refused
                                (`off`: any is taken, the default)
    cam-007 reboot 3            both ports gone for 3 s (`now`: 5 s), subscriptions lost
    cam-007 onvif malformed     ONVIF replies: ok, malformed (not XML), truncated, fault
                                (SOAP Fault), down (the port refuses)
    cam-007 status              {"control", "answer": "ok", "status": {camera id: {
                                "subscriptions": held now, "onvif", "clock_offset_s",
                                "rtsp_sessions", "rebooting", ...}}}
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import secrets
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from drivers.rtsp.auth import expected_digest, parse_challenge
from simulators import onvif as _onvif
from simulators.camera_clips import (
    CLOCK_RATE,
    Clip,
    ClipSpec,
    PacketisedFrame,
    load_clip,
    packetise,
    sdp_fmtp,
)
from simulators.ws_discovery import DiscoveryResponder, Endpoint, endpoint_uuid

log = logging.getLogger("simulators.cameras")

_MAX_REQUEST = 16 * 1024
# A client that does not read is dropped frames, as a camera's encoder queue would.
_WRITE_HIGH_WATER = 512 * 1024
_PICTURES = ("scene", "black", "frozen", "blurred", "covered", "night", "moved")
_PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, GET_PARAMETER, SET_PARAMETER, TEARDOWN"


@dataclass
class Faults:
    stall: bool = False  # answers RTSP, sends no more RTP
    refuse: bool = False  # not listening: connections are refused
    auth_fail: bool = False  # every login is refused
    low_fps: float | None = None  # frames per second sent instead of the clip's
    garbage: bool = False  # answers every request with bytes that are not RTSP
    oversized: bool = False  # answers with a header that never ends
    absurd_length: bool = False  # after PLAY, interleaved frames that are not RTP
    picture: str = "scene"  # or black, frozen, blurred, covered, night, moved (camera_clips)
    onvif: str = "ok"  # or malformed, truncated, fault, down, no_events (simulators.onvif)


_STREAMS: dict[ClipSpec, Stream] = {}  # every camera showing the same content shares it


@dataclass
class Stream:
    """One encoded loop, packetised once, shared by every camera serving it."""

    clip: Clip
    frames: tuple[PacketisedFrame, ...]

    @classmethod
    def of(cls, spec: ClipSpec, cache: Path | None = None) -> Stream:
        found = _STREAMS.get(spec)
        if found is None:
            clip = load_clip(spec, cache)
            found = _STREAMS[spec] = cls(clip, packetise(clip))
        return found

    def sdp(self, address: str) -> bytes:
        codec = "H264" if self.clip.spec.codec == "h264" else "H265"
        lines = [
            "v=0", f"o=- 1 1 IN IP4 {address}", "s=Compound camera", f"c=IN IP4 {address}",
            "t=0 0", "a=control:*", "m=video 0 RTP/AVP 96", f"a=rtpmap:96 {codec}/{CLOCK_RATE}",
            sdp_fmtp(self.clip), f"a=framerate:{self.clip.spec.fps}", "a=control:track1",
        ]
        return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class Camera:
    id: str
    stream: Stream
    username: str | None = None
    password: str | None = None
    auth: str = "digest"  # "digest" or "basic" when a login is set
    max_sessions: int = 2  # a camera's few stream slots
    public: str = _PUBLIC  # the methods OPTIONS names
    host: str = "127.0.0.1"
    port: int = 0
    faults: Faults = field(default_factory=Faults)
    sessions: set[_Connection] = field(default_factory=set)  # connections holding a slot
    connections: set[_Connection] = field(default_factory=set)
    requests: dict[str, int] = field(default_factory=dict)  # method -> count
    peak_sessions: int = 0
    nonce: str = field(default_factory=lambda: secrets.token_hex(12))
    location: str = "compound"  # the zone, in its ONVIF scopes and WS-Discovery
    rebooting: bool = False
    onvif: _onvif.OnvifDevice = field(init=False, repr=False, compare=False)
    _server: asyncio.Server | None = None
    _reboot: asyncio.Task[None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.onvif = _onvif.OnvifDevice(self)

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}/sub"

    def showing(self) -> Stream:
        """The stream for what the camera sees now (its picture fault, if any)."""
        content = self.faults.picture
        if content == self.stream.clip.spec.content:
            return self.stream
        return Stream.of(dataclasses.replace(self.stream.clip.spec, content=content))

    async def start(self) -> None:
        await self._listen()
        if self.faults.onvif != "down":
            await self.onvif.start()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._reboot is not None:
            self._reboot.cancel()
            self._reboot = None
            self.rebooting = False
        self._close()
        await self.onvif.stop()

    def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            conn.close()

    async def set_refuse(self, on: bool) -> None:
        """Stop listening (and drop every connection) or listen again on the same port."""
        self.faults.refuse = on
        if on:
            self._close()
        elif self._server is None and not self.rebooting:
            await self._listen()

    def reboot(self, seconds: float = 5.0) -> None:
        """Power-cycle: every RTSP connection drops, both ports refuse for `seconds`, the
        ONVIF subscriptions are forgotten; then the camera is back on the same ports."""
        if self._reboot is not None:
            self._reboot.cancel()
        self.rebooting = True
        self._close()
        self.onvif.reboot()
        self._reboot = asyncio.get_running_loop().create_task(self._come_back(seconds))

    async def _come_back(self, seconds: float) -> None:
        await self.onvif.stop()
        await asyncio.sleep(seconds)
        self.rebooting = False
        self.nonce = secrets.token_hex(12)
        try:
            if not self.faults.refuse and self._server is None:
                await self._listen()
            if self.faults.onvif != "down":
                await self.onvif.start()
        except OSError as err:  # its port was taken while it was down
            log.warning("camera=%s did not come back from its reboot: %s", self.id, err)
        self._reboot = None

    def disconnect(self) -> None:
        """Drop every connection now (a reboot, a switch port flapping)."""
        for conn in list(self.connections):
            conn.close()

    def check_login(self, method: str, header: str | None) -> bool:
        if self.faults.auth_fail:
            return False
        if self.username is None:
            return True
        if header is None:
            return False
        scheme, _, rest = header.partition(" ")
        if scheme.lower() == "basic" and self.auth == "basic":
            try:
                given = base64.b64decode(rest.strip(), validate=True).decode()
            except ValueError:
                return False
            return secrets.compare_digest(given, f"{self.username}:{self.password}")
        if scheme.lower() == "digest" and self.auth == "digest":
            try:
                params = parse_challenge(header).params
            except ValueError:
                return False
            if params.get("nonce") != self.nonce or params.get("username") != self.username:
                return False
            want = expected_digest(params, self.password or "", method, self.id)
            return secrets.compare_digest(params.get("response", ""), want)
        return False

    def challenge(self) -> str:
        if self.auth == "basic":
            return f'Basic realm="{self.id}"'
        return f'Digest realm="{self.id}", nonce="{self.nonce}", qop="auth"'


class _Connection(asyncio.Protocol):
    """One client's TCP connection to a camera: RTSP requests and, once playing, RTP."""

    def __init__(self, camera: Camera) -> None:
        self.camera = camera
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.session: str | None = None
        self.playing = False
        self._timer: asyncio.TimerHandle | None = None
        self._frame = 0
        self._seq = secrets.randbelow(65536)
        self._ts = secrets.randbelow(1 << 32)
        self._ssrc = secrets.randbelow(1 << 32)
        self._next_at = 0.0
        self._showing: Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.camera.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_stream()
        self.camera.connections.discard(self)
        self.camera.sessions.discard(self)
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.buf and self.transport is not None:
            if self.buf[0] == 0x24:  # an interleaved frame from the client (RTCP): skip
                if len(self.buf) < 4:
                    return
                (size,) = struct.unpack_from(">H", self.buf, 2)
                if len(self.buf) < 4 + size:
                    return
                del self.buf[: 4 + size]
                continue
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > _MAX_REQUEST:
                    self.close()
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[: end + 4 + length]
            self._request(lines[0], headers)

    def _request(self, request_line: str, headers: dict[str, str]) -> None:
        cam = self.camera
        parts = request_line.split(" ")
        method = parts[0].upper()
        url = parts[1] if len(parts) > 1 else ""
        cam.requests[method] = cam.requests.get(method, 0) + 1
        cseq = headers.get("cseq", "0")
        if cam.faults.garbage:
            self._write(b"\x17\x03\x03 not an answer at all \x00\xff" * 8)
            return
        if cam.faults.oversized:
            self._write(b"RTSP/1.0 200 OK\r\nCSeq: " + cseq.encode() + b"\r\nX-Pad: "
                        + b"A" * (64 * 1024))
            return
        if not cam.check_login(method, headers.get("authorization")):
            self._answer(401, "Unauthorized", cseq, {"WWW-Authenticate": cam.challenge()})
            return
        if method == "OPTIONS":
            self._answer(200, "OK", cseq, {"Public": cam.public})
        elif method == "DESCRIBE":
            body = cam.stream.sdp(cam.host)
            self._answer(200, "OK", cseq, {"Content-Base": f"{url.rstrip('/')}/",
                                           "Content-Type": "application/sdp"}, body)
        elif method == "SETUP":
            self._setup(cseq, headers)
        elif method == "PLAY":
            if self.session is None or headers.get("session", "").split(";")[0] != self.session:
                self._answer(454, "Session Not Found", cseq)
                return
            self._answer(200, "OK", cseq, {"Session": self.session, "Range": "npt=0.000-",
                                           "RTP-Info": f"url={url};seq={self._seq};"
                                                       f"rtptime={self._ts}"})
            self._start_stream()
        elif method in ("GET_PARAMETER", "SET_PARAMETER"):
            self._answer(200, "OK", cseq, {"Session": self.session} if self.session else {})
        elif method == "PAUSE":
            self._stop_stream()
            self._answer(200, "OK", cseq, {"Session": self.session or ""})
        elif method == "TEARDOWN":
            self._stop_stream()
            cam.sessions.discard(self)
            self._answer(200, "OK", cseq, {"Session": self.session or ""})
            self.session = None
        else:
            self._answer(501, "Not Implemented", cseq)

    def _setup(self, cseq: str, headers: dict[str, str]) -> None:
        cam = self.camera
        transport = headers.get("transport", "")
        if "RTP/AVP/TCP" not in transport.upper():
            self._answer(461, "Unsupported Transport", cseq)
            return
        if self not in cam.sessions and len(cam.sessions) >= cam.max_sessions:
            self._answer(453, "Not Enough Bandwidth", cseq)
            return
        cam.sessions.add(self)
        cam.peak_sessions = max(cam.peak_sessions, len(cam.sessions))
        self.session = self.session or secrets.token_hex(8)
        self._answer(200, "OK", cseq, {
            "Transport": "RTP/AVP/TCP;unicast;interleaved=0-1;"
                         f"ssrc={self._ssrc:08X}",
            "Session": f"{self.session};timeout=60"})

    def _answer(self, status: int, reason: str, cseq: str,
                headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        lines = [f"RTSP/1.0 {status} {reason}", f"CSeq: {cseq}", "Server: compound-camera-sim"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self._write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    # The stream: one timer per connection, frames sent on the clip's clock.
    def _start_stream(self) -> None:
        if self.playing:
            return
        self.playing = True
        loop = asyncio.get_running_loop()
        self._next_at = loop.time()
        self._send_frame()

    def _stop_stream(self) -> None:
        self.playing = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _send_frame(self) -> None:
        if not self.playing or self.transport is None:
            return
        cam = self.camera
        stream = cam.showing()
        if stream is not self._showing:  # another picture starts at its keyframe
            self._showing, self._frame = stream, 0
        fps = cam.faults.low_fps or stream.clip.spec.fps
        frames = stream.frames
        frame = frames[self._frame % len(frames)]
        self._frame += 1
        if cam.faults.absurd_length:
            self.transport.write(b"$\x00\xff\xff" + b"\x00" * 65535)
        elif not cam.faults.stall:
            if self.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                self._seq = (self._seq + len(frame.headers)) & 0xFFFF  # dropped: a gap
            else:
                blob = bytearray(frame.blob)
                seq, ts, ssrc = self._seq, self._ts, self._ssrc
                for offset in frame.headers:
                    struct.pack_into(">HII", blob, offset + 2, seq, ts, ssrc)
                    seq = (seq + 1) & 0xFFFF
                self._seq = seq
                self.transport.write(blob)
        self._ts = (self._ts + CLOCK_RATE // int(fps) if fps >= 1 else self._ts + CLOCK_RATE
                    ) & 0xFFFFFFFF
        loop = asyncio.get_running_loop()
        self._next_at = max(self._next_at + 1.0 / fps, loop.time() - 1.0)
        self._timer = loop.call_at(self._next_at, self._send_frame)


class CameraFarm:
    """Many cameras in one process, each on its own free loopback port."""

    def __init__(self, cameras: list[Camera]) -> None:
        self.cameras = {c.id: c for c in cameras}

    @classmethod
    def build(cls, count: int, spec: ClipSpec, *, username: str | None = None,
              password: str | None = None, auth: str = "digest",
              cache: Path | None = None) -> CameraFarm:
        stream = Stream.of(spec, cache)
        return cls([Camera(f"cam-{n:03d}", stream, username, password, auth)
                    for n in range(1, count + 1)])

    def __getitem__(self, camera_id: str) -> Camera:
        return self.cameras[camera_id]

    def endpoints(self) -> list[Endpoint]:
        """What WS-Discovery tells of: every camera whose ONVIF port is up."""
        return [Endpoint(endpoint_uuid(cam.id), cam.onvif.device_url,
                         tuple(cam.onvif.scopes()))
                for cam in self.cameras.values() if cam.onvif.running]

    async def __aenter__(self) -> CameraFarm:
        for camera in self.cameras.values():
            await camera.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for camera in self.cameras.values():
            await camera.stop()

    def _targets(self, target: str) -> list[Camera]:
        return list(self.cameras.values()) if target == "*" else (
            [self.cameras[target]] if target in self.cameras else [])

    def status(self, target: str = "*") -> dict[str, dict[str, object]]:
        """Per camera: RTSP sessions and connections, and its ONVIF side (subscriptions
        held, mode, clock offset), for `<camera|*> status`."""
        return {cam.id: {"rtsp_sessions": len(cam.sessions),
                         "rtsp_connections": len(cam.connections),
                         "rebooting": cam.rebooting, **cam.onvif.status()}
                for cam in self._targets(target)}

    async def control(self, line: str) -> str:
        """`<camera id|*> <fault> <on|off|value>`; the answer is `ok` or what was wrong.
        `<camera id|*> status` answers with the status as JSON."""
        parts = line.split()
        if len(parts) == 2 and parts[1] == "status":
            found = self.status(parts[0])
            return json.dumps(found) if found else f"error: no camera {parts[0]}"
        if len(parts) != 3:
            return "error: expected `<camera|*> <fault> <on|off|value>`"
        target, fault, value = parts
        cams = self._targets(target)
        if not cams:
            return f"error: no camera {target}"
        on = value.lower() in ("on", "1", "true")
        number: float | None
        try:
            number = float(value)
        except ValueError:
            number = 5.0 if fault == "reboot" and value in ("on", "now") else None
        if (fault in ("clock_drift", "reboot") and number is None) or (
                fault == "token_window" and number is None and value != "off"):
            return f"error: {fault} needs seconds, not {value}"
        if fault == "onvif" and value not in _onvif.ONVIF_MODES:
            return f"error: no onvif mode {value} ({', '.join(_onvif.ONVIF_MODES)})"
        for cam in cams:
            if fault == "refuse":
                await cam.set_refuse(on)
            elif fault == "disconnect":
                cam.disconnect()
            elif fault == "low_fps":
                cam.faults.low_fps = None if value == "off" else float(value)
            elif fault == "picture":
                if value not in _PICTURES:
                    return f"error: no picture {value}"
                spec = dataclasses.replace(cam.stream.clip.spec, content=value)
                await asyncio.to_thread(Stream.of, spec)  # encoded before it is needed
                cam.faults.picture = value
                cam.onvif.events.show_picture(value)
            elif fault == "onvif":
                await cam.onvif.set_mode(value)
            elif fault == "clock_drift" and number is not None:
                cam.onvif.clock.offset_s = number
            elif fault == "token_window":
                cam.onvif.token_window_s = None if value == "off" else number
            elif fault == "motion":
                cam.onvif.events.set_state("motion", on)
            elif fault == "reboot" and number is not None:
                cam.reboot(number)
            elif fault in ("stall", "auth_fail", "garbage", "oversized", "absurd_length"):
                setattr(cam.faults, fault, on)
            else:
                return f"error: no fault {fault}"
        return "ok"


async def _serve(args: argparse.Namespace) -> None:
    spec = ClipSpec(args.codec, args.width, args.height, args.fps, args.seconds, args.bitrate)
    farm = CameraFarm.build(args.count, spec, username=args.username, password=args.password,
                            auth=args.auth)
    for content in filter(None, args.pictures.split(",")):
        Stream.of(dataclasses.replace(spec, content=content))  # encoded before it is asked for
    async with farm:
        discovery = DiscoveryResponder(farm.endpoints, args.discovery_port,
                                       multicast=args.discovery_multicast)
        await discovery.start()
        for cam in farm.cameras.values():
            print(json.dumps({"id": cam.id, "port": cam.port, "url": cam.url,
                              "onvif": cam.onvif.base_url}), flush=True)
        print(json.dumps({"ready": len(farm.cameras), "discovery": discovery.port}),
              flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            text = line.decode().strip()
            if text:
                answer = await farm.control(text)
                if text.endswith(" status") and not answer.startswith("error"):
                    print(json.dumps({"control": text, "answer": "ok",
                                      "status": json.loads(answer)}), flush=True)
                else:
                    print(json.dumps({"control": text, "answer": answer}), flush=True)
        discovery.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.cameras", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--codec", choices=("h264", "h265"), default="h264")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--seconds", type=int, default=2)
    p.add_argument("--bitrate", type=int, default=256_000)
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--auth", choices=("digest", "basic"), default="digest")
    p.add_argument("--discovery-port", type=int, default=0,
                   help="the WS-Discovery UDP port on 127.0.0.1 (0: a free one, printed)")
    p.add_argument("--discovery-multicast", action="store_true",
                   help="also join 239.255.255.250:3702, as real cameras do")
    p.add_argument("--pictures", default="", help="picture faults to encode at start-up, "
                   "comma-separated (black,frozen,blurred,covered,night)")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(p.parse_args(argv)))


if __name__ == "__main__":
    main()
