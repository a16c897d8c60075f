"""The MQTT device driver: one broker connection carrying many detectors' reports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from drivers.mqtt import wire
from drivers.mqtt.codec import DeviceCodec
from drivers.mqtt.config import BrokerEndpoint
from drivers.mqtt.reports import DeviceBinding, ReportRouter
from drivers.mqtt.session import IngestSession
from gateway.clock import Clock
from gateway.contract import Link, Sink
from gateway.errors import AuthError, Unreachable

CONNECT_TIMEOUT_S = 10.0
COMMIT_TIMEOUT_S = 10.0


def topic_filters(topics: Iterable[str]) -> list[str]:
    """One `parent/+` filter per distinct parent, so reports of unknown devices are seen too."""
    filters = set()
    for topic in topics:
        parent, _, _ = topic.rpartition("/")
        filters.add(f"{parent}/+" if parent else topic)
    return sorted(filters)


class MqttDeviceDriver:
    """Subscribes to its devices' topics on one broker and feeds the sink."""

    def __init__(
        self,
        name: str,
        endpoint: BrokerEndpoint,
        bindings: Iterable[DeviceBinding],
        codecs: Mapping[str, DeviceCodec],
        sink: Sink,
        *,
        clock: Clock | None = None,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._endpoint = endpoint
        self._router = ReportRouter(name, bindings, codecs, sink, clock=clock)
        self._commit_timeout_s = commit_timeout_s

    async def run(self, link: Link) -> None:
        ep = self._endpoint
        loop = asyncio.get_running_loop()
        await self._router.restart(self._commit_timeout_s)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, session = await loop.create_connection(IngestSession, ep.host, ep.port)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"broker {ep.host}:{ep.port}: {exc or 'connect timed out'}") from exc
        try:
            await self._open(session, link)
            session.start_keepalive(ep.keepalive_s)
            while True:
                batch = await session.next_batch()
                acks = []
                for publish in batch:
                    await self._router.handle(publish.topic, publish.payload,
                                              retained=publish.retain)
                    if publish.qos:
                        acks.append(wire.puback(publish.packet_id))
                # Every report is acknowledged only once it is on disk with whatever the
                # rules derived from it: until then the broker keeps it for this
                # persistent session, so a crash or a failed commit loses nothing.
                settled = self._router.settle()
                try:
                    async with asyncio.timeout(self._commit_timeout_s):
                        await settled
                except TimeoutError:
                    raise Unreachable(
                        f"store did not commit within {self._commit_timeout_s:g} s; "
                        "not acknowledging") from None
                if acks:
                    session.send(b"".join(acks))
        finally:
            session.close()

    async def _open(self, session: IngestSession, link: Link) -> None:
        ep = self._endpoint
        session.send(wire.connect(
            ep.client_id or f"gw-ingest-{self.name}", ep.keepalive_s,
            # A persistent session: while the gateway restarts, the broker keeps the
            # detectors' QoS 1 reports (alarms, faults) for it.
            clean_session=False, username=ep.username, password=ep.password,
        ))
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                code = await session.connack
                if code in (4, 5):
                    raise AuthError(f"broker {ep.host}:{ep.port}: {wire.CONNACK_REASONS[code]}")
                if code:
                    reason = wire.CONNACK_REASONS.get(code, f"code {code}")
                    raise Unreachable(f"broker {ep.host}:{ep.port} refused: {reason}")
                filters = topic_filters(self._router.topics)
                session.send(wire.subscribe(1, [(f, 1) for f in filters]))
                granted = await session.suback
        except TimeoutError:
            raise Unreachable(f"broker {ep.host}:{ep.port}: no CONNACK/SUBACK") from None
        link.up()
        refused = [f for f, code in zip(filters, granted, strict=False) if code == 0x80]
        if refused:
            link.degraded(f"subscription refused: {', '.join(refused)}")
