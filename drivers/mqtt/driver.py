"""The MQTT device driver: one broker connection carrying many detectors' reports."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace

from drivers.mqtt import wire
from drivers.mqtt.config import BrokerEndpoint, DetectorBinding
from drivers.mqtt.heat_detector import (
    DetectorMemory,
    HeatDetectorProfile,
    decode_report,
    normalise,
)
from drivers.mqtt.session import IngestSession
from gateway.clock import Clock, SystemClock
from gateway.contract import Link, Sink
from gateway.errors import AuthError, PayloadRejected, Unreachable

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
    """Subscribes to the detectors' topics on one broker and feeds the sink."""

    def __init__(
        self,
        name: str,
        endpoint: BrokerEndpoint,
        detectors: Iterable[DetectorBinding],
        profile: HeatDetectorProfile,
        sink: Sink,
        *,
        clock: Clock | None = None,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._endpoint = endpoint
        self._by_topic = {d.topic: d for d in detectors}
        # What each detector's flags were as of the last commit. The working memory starts
        # from it on every (re)connect: if a commit failed, the broker sends the report
        # again and it must raise its event again.
        self._settled = {
            d.device_id: DetectorMemory(alarm=d.alarm, fault=d.fault)
            for d in self._by_topic.values()
        }
        self._memory = {k: replace(v) for k, v in self._settled.items()}
        self._profile = profile
        self._sink = sink
        self._clock = clock or SystemClock()
        self._commit_timeout_s = commit_timeout_s

    async def run(self, link: Link) -> None:
        ep = self._endpoint
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, session = await loop.create_connection(IngestSession, ep.host, ep.port)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"broker {ep.host}:{ep.port}: {exc or 'connect timed out'}") from exc
        self._memory = {k: replace(v) for k, v in self._settled.items()}
        try:
            await self._open(session, link)
            session.start_keepalive(ep.keepalive_s)
            while True:
                batch = await session.next_batch()
                acks = []
                commits: list[asyncio.Future[None]] = []
                changed: set[str] = set()
                for publish in batch:
                    futures = await self._handle(publish.topic, publish.payload)
                    if futures:
                        commits += futures
                        changed.add(self._by_topic[publish.topic].device_id)
                    if publish.qos:
                        acks.append(wire.puback(publish.packet_id))
                if commits:
                    # A report that raised an event is acknowledged only once the event is
                    # on disk: until then the broker keeps it for this persistent session,
                    # so a crash between here and the commit loses nothing.
                    try:
                        async with asyncio.timeout(self._commit_timeout_s):
                            await asyncio.gather(*commits)
                    except TimeoutError:
                        raise Unreachable(
                            f"store did not commit within {self._commit_timeout_s:g} s; "
                            "not acknowledging") from None
                    for device_id in changed:
                        self._settled[device_id] = replace(self._memory[device_id])
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
                filters = topic_filters(self._by_topic)
                session.send(wire.subscribe(1, [(f, 1) for f in filters]))
                granted = await session.suback
        except TimeoutError:
            raise Unreachable(f"broker {ep.host}:{ep.port}: no CONNACK/SUBACK") from None
        link.up()
        refused = [f for f, code in zip(filters, granted, strict=False) if code == 0x80]
        if refused:
            link.degraded(f"subscription refused: {', '.join(refused)}")

    async def _handle(self, topic: str, payload: bytes) -> list[asyncio.Future[None]]:
        """Decode one report onto the sink; returns the commit futures of its events."""
        sink = self._sink
        binding = self._by_topic.get(topic)
        if binding is None:
            sink.rejected("mqtt", "unknown_device", topic[:120])
            return []
        try:
            report = decode_report(payload, self._profile)
        except PayloadRejected as exc:
            sink.rejected("mqtt", exc.reason, exc.detail, binding.device_id)
            return []
        telemetry, events = normalise(
            binding.device_id,
            binding.zone,
            report,
            self._memory[binding.device_id],
            self._clock.now(),
            sink.next_seq,
            self._profile,
        )
        commits = [await sink.event(event) for event in events]
        for item in telemetry:
            sink.telemetry(item)
        return commits
