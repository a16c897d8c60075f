"""WS-Discovery (2005/04, as ONVIF cameras speak it): one Probe for network video
transmitters, multicast on 239.255.255.250:3702 or sent to one HOST:PORT, and the
ProbeMatches that come back; then, with a login, each camera's device information and
profiles, printed as site-file entries to paste under `devices:`.

The Probe is a few lines of XML over one UDP socket (lxml reads the answers), not the
`wsdiscovery` package: that package runs its own threads and a daemon for what is one
datagram out and a few in."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from lxml import etree  # type: ignore[import-untyped]
from ruamel.yaml import YAML

from drivers.onvif.adapter import DeviceInfo, OnvifSession, Profile
from gateway.errors import GatewayError

MULTICAST: Final = ("239.255.255.250", 3702)
_SOAP: Final = "http://www.w3.org/2003/05/soap-envelope"
_WSA: Final = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
_WSD: Final = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
_DN: Final = "http://www.onvif.org/ver10/network/wsdl"
_PARSER: Final = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_MAX_DATAGRAM: Final = 64 * 1024
_NOT_NAME: Final = re.compile(r"[^a-z0-9_-]+")
PLACEHOLDER_ZONE: Final = "set-the-zone"
_QUERIES_AT_ONCE: Final = 8


@dataclass(frozen=True, slots=True)
class Found:
    """One ProbeMatch: a camera that answered."""

    endpoint: str  # urn:uuid:..., stable per device
    xaddrs: tuple[str, ...]  # its device service addresses
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Surveyed:
    found: Found
    info: DeviceInfo | None = None
    sub_stream: str | None = None
    error: str | None = None  # why the camera could not be read (no secret in it)


def probe(message_id: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{_SOAP}" '
            f'xmlns:a="{_WSA}" xmlns:d="{_WSD}" xmlns:dn="{_DN}"><s:Header>'
            f"<a:Action>{_WSD}/Probe</a:Action><a:MessageID>{message_id}</a:MessageID>"
            "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>"
            "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe>"
            "</s:Body></s:Envelope>").encode()


def parse_matches(data: bytes, message_id: str | None = None) -> list[Found]:
    """The ProbeMatch entries of one datagram; [] for anything else (another client's
    Probe, a Hello, a reply to someone else's Probe, not XML)."""
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError:
        return []
    header = root.find(f"{{{_SOAP}}}Header")
    if header is None:
        return []
    if (header.findtext(f"{{{_WSA}}}Action") or "").strip() != f"{_WSD}/ProbeMatches":
        return []
    if message_id is not None and (
            header.findtext(f"{{{_WSA}}}RelatesTo") or "").strip() != message_id:
        return []
    out = []
    for match in root.iterfind(f"{{{_SOAP}}}Body/{{{_WSD}}}ProbeMatches/{{{_WSD}}}ProbeMatch"):
        endpoint = (match.findtext(f"{{{_WSA}}}EndpointReference/{{{_WSA}}}Address")
                    or "").strip()
        xaddrs = tuple(a for a in (match.findtext(f"{{{_WSD}}}XAddrs") or "").split()
                       if a.startswith(("http://", "https://")))
        scopes = tuple((match.findtext(f"{{{_WSD}}}Scopes") or "").split())
        if endpoint and xaddrs:
            out.append(Found(endpoint, xaddrs, scopes))
    return out


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.found: dict[str, Found] = {}
        self.unreadable = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        matches = parse_matches(data[:_MAX_DATAGRAM], self.message_id)
        if not matches:
            self.unreadable += 1
        for m in matches:
            self.found.setdefault(m.endpoint, m)


async def scan(timeout_s: float = 3.0, target: tuple[str, int] | None = None) -> list[Found]:
    """Every camera that answers one Probe within `timeout_s`, by endpoint, in the order
    their device addresses sort."""
    loop = asyncio.get_running_loop()
    message_id = f"urn:uuid:{uuid.uuid4()}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        if target is None:
            # The site's cameras sit a router hop or so away at most.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        # The answers come back to the Probe's own port, on whichever interface faces the
        # cameras: any, unless the target is this host.
        local = target is not None and target[0] in ("127.0.0.1", "localhost")
        sock.bind(("127.0.0.1" if local else "0.0.0.0", 0))  # noqa: S104
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    transport, collector = await loop.create_datagram_endpoint(
        lambda: _Collector(message_id), sock=sock)
    try:
        message = probe(message_id)
        where = target or MULTICAST
        transport.sendto(message, where)
        await asyncio.sleep(min(0.2, timeout_s / 4))
        transport.sendto(message, where)  # UDP: the Probe is sent twice, as the spec advises
        await asyncio.sleep(max(0.0, timeout_s - min(0.2, timeout_s / 4)))
    finally:
        transport.close()
    return sorted(collector.found.values(), key=lambda f: f.xaddrs)


def _rank(p: Profile) -> tuple[int, bool]:
    return ((p.width or 1 << 15) * (p.height or 1 << 15),
            "sub" not in f"{p.token} {p.name}".lower())


async def survey(found: Sequence[Found], username: str | None, password: str | None,
                 timeout_s: float = 5.0) -> list[Surveyed]:
    """Each camera's device information and sub-stream, read with the login; without a
    login, what discovery told is all there is."""
    if username is None:
        return [Surveyed(f) for f in found]
    gate = asyncio.Semaphore(_QUERIES_AT_ONCE)

    async def one(f: Found) -> Surveyed:
        async with gate:
            session = OnvifSession(f.xaddrs[0], username, password, timeout_s=timeout_s)
            try:
                await session.open()
                info = await session.device_info()
                streams = [p for p in await session.profiles() if p.stream_uri]
                ranked = sorted(streams, key=_rank)
                return Surveyed(f, info, ranked[0].stream_uri if ranked else None)
            except GatewayError as exc:
                return Surveyed(f, error=f"{type(exc).__name__}: {exc}"[:160])
            finally:
                await session.close()

    return list(await asyncio.gather(*(one(f) for f in found)))


def _scope(scopes: Sequence[str], kind: str) -> str | None:
    prefix = f"onvif://www.onvif.org/{kind}/"
    for s in scopes:
        if s.startswith(prefix):
            return unquote(s[len(prefix):]).strip("/") or None
    return None


def _name(text: str) -> str:
    return _NOT_NAME.sub("-", text.lower()).strip("-_")[:64]


def _bare_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def entries(surveyed: Sequence[Surveyed], username: str | None,
            password_env: str) -> list[dict[str, Any]]:
    """Site-file device entries: driver rtsp, an id (the camera's ONVIF name, else
    cam-NNN), the zone from its location scope (else a placeholder to set), the
    sub-stream's address, the ONVIF URL, the login as a secret reference. Cameras whose
    stream could not be read come disabled, with their ONVIF host as a stand-in address."""
    out: list[dict[str, Any]] = []
    used: set[str] = set()
    for n, s in enumerate(surveyed, 1):
        f = s.found
        name = _name(_scope(f.scopes, "name") or "") or f"cam-{n:03d}"
        while name in used:
            name = f"{name[:60]}-{n}"
        used.add(name)
        zone = _name(_scope(f.scopes, "location") or "") or PLACEHOLDER_ZONE
        onvif = _bare_url(f.xaddrs[0])
        entry: dict[str, Any] = {"driver": "rtsp", "id": name, "kind": "camera",
                                 "zone": zone}
        if s.sub_stream:
            entry["address"] = _bare_url(s.sub_stream)
        else:
            entry["address"] = f"rtsp://{urlsplit(onvif).hostname}:554/"
            entry["enabled"] = False
        entry["onvif"] = onvif
        if username is not None:
            entry["username"] = username
            entry["password"] = {"env": password_env}
        out.append(entry)
    return out


def render(surveyed: Sequence[Surveyed], username: str | None, password_env: str) -> str:
    """The inventory as YAML, with a comment per camera (make, model, firmware, or why it
    could not be read)."""
    lines = [f"# {len(surveyed)} camera(s) answered; paste under `devices:`",
             "# (zones from each camera's ONVIF location; set any left as "
             f"`{PLACEHOLDER_ZONE}`)"]
    for s, entry in zip(surveyed, entries(surveyed, username, password_env), strict=True):
        if s.info is not None:
            i = s.info
            lines.append(f"# {i.manufacturer} {i.model}, firmware {i.firmware}, "
                         f"serial {i.serial}")
        elif s.error is not None:
            lines.append(f"# not read: {s.error}")
        else:
            lines.append("# not read: no login given (--username)")
        lines.append(_dump([entry]).rstrip())
    return "\n".join(lines) + "\n"


def _dump(data: object) -> str:
    out = io.StringIO()
    yaml = YAML()  # round trip: the keys keep the order a site file has them in
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()
