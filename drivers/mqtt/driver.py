"""The MQTT device driver: one broker connection carrying many detectors' reports."""

from __future__ import annotations

from collections.abc import Iterable

import aiomqtt

from drivers.mqtt.config import BrokerEndpoint, DetectorBinding
from drivers.mqtt.heat_detector import (
    DetectorMemory,
    HeatDetectorProfile,
    decode_report,
    normalise,
)
from gateway.clock import Clock, SystemClock
from gateway.contract import Link, Sink
from gateway.errors import PayloadRejected, Unreachable


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
    ) -> None:
        self.name = name
        self._endpoint = endpoint
        self._by_topic = {d.topic: d for d in detectors}
        self._memory = {
            d.device_id: DetectorMemory(alarm=d.alarm, fault=d.fault)
            for d in self._by_topic.values()
        }
        self._profile = profile
        self._sink = sink
        self._clock = clock or SystemClock()
        self.messages = 0

    async def run(self, link: Link) -> None:
        ep = self._endpoint
        try:
            async with aiomqtt.Client(
                ep.host,
                ep.port,
                username=ep.username,
                password=ep.password,
                identifier=ep.client_id,
                keepalive=ep.keepalive_s,
                clean_session=True,
                timeout=10,
            ) as client:
                for flt in topic_filters(self._by_topic):
                    await client.subscribe(flt, qos=1)
                link.up()
                async for message in client.messages:
                    await self._handle(str(message.topic), message.payload)
        except aiomqtt.MqttError as exc:
            raise Unreachable(f"broker {ep.host}:{ep.port}: {exc}") from exc

    async def _handle(self, topic: str, payload: object) -> None:
        self.messages += 1
        sink = self._sink
        binding = self._by_topic.get(topic)
        if binding is None:
            sink.rejected("mqtt", "unknown_device", topic[:120])
            return
        if not isinstance(payload, bytes | bytearray):
            sink.rejected("mqtt", "wrong_type", "payload is not bytes", binding.device_id)
            return
        try:
            report = decode_report(bytes(payload), self._profile)
        except PayloadRejected as exc:
            sink.rejected("mqtt", exc.reason, exc.detail, binding.device_id)
            return
        telemetry, events = normalise(
            binding.device_id,
            binding.zone,
            report,
            self._memory[binding.device_id],
            self._clock.now(),
            sink.next_seq,
            self._profile,
        )
        for event in events:
            await sink.event(event)
        for item in telemetry:
            sink.telemetry(item)
