"""WS-Discovery (2005/04, as ONVIF devices speak it) for the simulated cameras: one UDP
responder answers a Probe for every camera of the process, each camera in its own
ProbeMatches message (its endpoint, types, scopes and device service address), as if each
were its own device.

It listens on a UDP port on 127.0.0.1 (tests and local clients send their Probe there);
joining the multicast group 239.255.255.250:3702, as real cameras do, is only done when
asked (`--discovery-multicast` on the simulator). In a test:

    async with DiscoveryResponder(farm.endpoints) as discovery:
        ...  # send a Probe to 127.0.0.1:discovery.port
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast
from xml.sax.saxutils import escape

from lxml import etree  # type: ignore[import-untyped]

log = logging.getLogger("simulators.ws_discovery")

MULTICAST_GROUP = "239.255.255.250"
MULTICAST_PORT = 3702
SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DN = "http://www.onvif.org/ver10/network/wsdl"
TDS = "http://www.onvif.org/ver10/device/wsdl"
PROBE = f"{WSD}/Probe"
PROBE_MATCHES = f"{WSD}/ProbeMatches"
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_MAX_DATAGRAM = 64 * 1024


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One device as discovery tells of it."""

    uuid: str  # urn:uuid:..., stable per camera
    xaddrs: str  # space-separated device service addresses
    scopes: tuple[str, ...]
    types: tuple[tuple[str, str], ...] = ((DN, "NetworkVideoTransmitter"), (TDS, "Device"))


def endpoint_uuid(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'compound-camera:' + name)}"


def probe(message_id: str | None = None, types: str = "dn:NetworkVideoTransmitter",
          scopes: str = "") -> bytes:
    """A Probe message, as a client sends it (tests, and a scan without a library)."""
    mid = message_id or f"urn:uuid:{uuid.uuid4()}"
    scope_xml = f"<d:Scopes>{escape(scopes)}</d:Scopes>" if scopes else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP}" '
            f'xmlns:a="{WSA}" xmlns:d="{WSD}" xmlns:dn="{DN}"><s:Header>'
            f"<a:Action>{PROBE}</a:Action><a:MessageID>{mid}</a:MessageID>"
            "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To></s:Header>"
            f"<s:Body><d:Probe><d:Types>{escape(types)}</d:Types>{scope_xml}</d:Probe>"
            "</s:Body></s:Envelope>").encode()


def _qnames(text: str, nsmap: dict[str | None, str]) -> set[tuple[str, str]]:
    """`dn:NetworkVideoTransmitter tds:Device` as (namespace, name) pairs."""
    out = set()
    for item in text.split():
        prefix, _, local = item.rpartition(":")
        out.add((nsmap.get(prefix or None, ""), local))
    return out


def _scope_matches(wanted: str, have: str) -> bool:
    """RFC 3986 matching (the default rule): the same scheme and host, and the wanted
    path's segments a prefix of the scope's."""
    w, h = wanted.rstrip("/").split("/"), have.rstrip("/").split("/")
    return len(w) <= len(h) and [s.lower() for s in w[:3]] == [s.lower() for s in h[:3]] \
        and w[3:] == h[3 : len(w)]


def matches(endpoint: Endpoint, types: set[tuple[str, str]], scopes: list[str]) -> bool:
    if types and not types <= set(endpoint.types):
        return False
    return all(any(_scope_matches(s, have) for have in endpoint.scopes) for s in scopes)


def probe_matches(endpoint: Endpoint, relates_to: str, sequence: int) -> bytes:
    types = " ".join(f"{'dn' if ns == DN else 'tds'}:{name}" for ns, name in endpoint.types)
    return (f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP}" '
            f'xmlns:a="{WSA}" xmlns:d="{WSD}" xmlns:dn="{DN}" xmlns:tds="{TDS}"><s:Header>'
            f"<a:Action>{PROBE_MATCHES}</a:Action>"
            f"<a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>"
            f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo><a:To>{_ANONYMOUS}</a:To>"
            f'<d:AppSequence InstanceId="1" MessageNumber="{sequence}"/></s:Header>'
            "<s:Body><d:ProbeMatches><d:ProbeMatch><a:EndpointReference>"
            f"<a:Address>{endpoint.uuid}</a:Address></a:EndpointReference>"
            f"<d:Types>{types}</d:Types>"
            f"<d:Scopes>{escape(' '.join(endpoint.scopes))}</d:Scopes>"
            f"<d:XAddrs>{escape(endpoint.xaddrs)}</d:XAddrs>"
            "<d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches>"
            "</s:Body></s:Envelope>").encode()


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, owner: DiscoveryResponder) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if self.transport is None:
            return
        for reply in self.owner.answer(data):
            self.transport.sendto(reply, addr)


class DiscoveryResponder:
    """Answers Probes for the endpoints `endpoints()` names at the time of the Probe (a
    camera that is down or rebooting is left out by the caller)."""

    def __init__(self, endpoints: Callable[[], Iterable[Endpoint]], port: int = 0,
                 host: str = "127.0.0.1", multicast: bool = False) -> None:
        self.endpoints = endpoints
        self.host, self.port, self.multicast = host, port, multicast
        self.probes = 0
        self.rejected = 0  # datagrams that were not a Probe we could read
        self._sequence = 0
        self._transports: list[asyncio.DatagramTransport] = []

    def answer(self, data: bytes) -> list[bytes]:
        try:
            root = etree.fromstring(data, parser=_PARSER)
        except etree.XMLSyntaxError:
            self._reject("not XML")
            return []
        action = root.findtext(f"{{{SOAP}}}Header/{{{WSA}}}Action") or ""
        body = root.find(f"{{{SOAP}}}Body/{{{WSD}}}Probe")
        if action.strip() != PROBE or body is None:
            return []  # Hello, Bye, Resolve, others' ProbeMatches: not for us
        self.probes += 1
        relates = (root.findtext(f"{{{SOAP}}}Header/{{{WSA}}}MessageID") or "").strip()
        types_el = body.find(f"{{{WSD}}}Types")
        types = _qnames(types_el.text or "", types_el.nsmap) if types_el is not None else set()
        scopes = (body.findtext(f"{{{WSD}}}Scopes") or "").split()
        out = []
        for endpoint in self.endpoints():
            if matches(endpoint, types, scopes):
                self._sequence += 1
                out.append(probe_matches(endpoint, relates, self._sequence))
        return out

    def _reject(self, why: str) -> None:
        if self.rejected == 0:
            log.warning("WS-Discovery: a datagram was %s; counted from now on", why)
        self.rejected += 1

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Responder(self), local_addr=(self.host, self.port))
        self._transports.append(transport)
        self.port = transport.get_extra_info("sockname")[1]
        if self.multicast:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", MULTICAST_PORT))
            group = struct.pack("=4sl", socket.inet_aton(MULTICAST_GROUP),
                                socket.INADDR_ANY)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Responder(self), sock=sock)
            self._transports.append(transport)

    def stop(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    async def __aenter__(self) -> DiscoveryResponder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
