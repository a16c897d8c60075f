"""Barrier gate controllers on the site broker: one MQTT link per broker carrying every
controller on it. A controller's reports (`<topic>/event`) become gate events; each QoS 1
report is acknowledged only once its events are committed. A read the controller kept
while offline is history and never opens; a repeated plate id is dropped and counted.

The decision for a read comes back as a command: the vehicle rules' `open` goes through
the commander (guard, audit) to `execute`, which publishes it on `<topic>/command` and
waits for the broker's PUBACK: `unverified` (the barrier's next state report is judged
by the rules, so one that does not move is `gate.jammed`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from drivers.mqtt import gate_codec
from drivers.mqtt.config import BrokerEndpoint
from gateway.clock import Clock, SystemClock
from gateway.commands import Command, CommandResult, CommandStatus
from gateway.contract import Link, Sink
from gateway.errors import PayloadRejected, Unreachable
from gateway.events import Event, Heartbeat
from gateway.mqtt_loop import LinkOptions, MqttLink

log = logging.getLogger("drivers.mqtt.gates")

DRIVER = "mqtt_gate"
SEEN_PER_GATE = 1024
COMMIT_TIMEOUT_S = 10.0
PUBACK_TIMEOUT_S = 5.0
ACTIONS = {"open": "open", "close": "close", "hold_open": "alwaysOpen", "release": "normal"}


@dataclass(frozen=True, slots=True)
class ControllerSpec:
    id: str
    zone: str
    topic: str


class GateControllerDriver:
    def __init__(self, name: str, endpoint: BrokerEndpoint, gates: Iterable[ControllerSpec],
                 sink: Sink, *, clock: Clock | None = None) -> None:
        self.name = name
        self._endpoint = endpoint
        self.gates = {g.id: g for g in gates}
        self._by_topic = {f"{g.topic}/event": g for g in self.gates.values()}
        self._sink = sink
        self._clock = clock or SystemClock()
        self._seen: dict[str, OrderedDict[str, None]] = {g: OrderedDict() for g in self.gates}
        self._mqtt: MqttLink | None = None

    def _options(self) -> LinkOptions:
        ep = self._endpoint
        return LinkOptions(ep.host, ep.port, ep.client_id or f"gw-{self.name}",
                           keepalive_s=ep.keepalive_s, username=ep.username,
                           password=ep.password, tls=ep.tls, protocol=4, clean_start=False,
                           manual_ack=True)

    async def run(self, link: Link) -> None:
        mqtt = MqttLink(self._options())
        try:
            await mqtt.connect()
            await mqtt.subscribe([(t, 1) for t in sorted(self._by_topic)])
            self._mqtt = mqtt
            link.up()
            while True:
                batch = await mqtt.next_batch()
                acks = []
                for message in batch:
                    await self._handle(message.topic, bytes(message.payload))
                    if message.qos:
                        acks.append((message.mid, message.qos))
                if acks:
                    try:
                        async with asyncio.timeout(COMMIT_TIMEOUT_S):
                            await self._sink.settle()
                    except TimeoutError:
                        raise Unreachable("store did not commit in time; not acknowledging"
                                          ) from None
                    for mid, qos in acks:
                        mqtt.ack(mid, qos)
        finally:
            self._mqtt = None
            mqtt.close()

    async def _handle(self, topic: str, payload: bytes) -> None:
        gate = self._by_topic.get(topic)
        if gate is None:
            return
        try:
            doc = gate_codec.decode(payload)
            produced = gate_codec.items(gate.id, gate.zone, doc, self._clock.now(),
                                        self._sink.next_seq)
        except PayloadRejected as exc:
            self._sink.rejected(DRIVER, exc.reason, exc.detail, gate.id)
            return
        for item in produced:
            if isinstance(item, Heartbeat):
                self._sink.telemetry(item)
                continue
            if item.kind == "gate.plate" and self._repeat(gate.id, item):
                self._sink.sequence(DRIVER, gate.id, duplicate=True)
                continue
            await self._sink.event(item)

    def _repeat(self, gate: str, event: Event) -> bool:
        seen = self._seen[gate]
        plate_id = str(event.data["plate_id"])
        if plate_id in seen:
            return True
        seen[plate_id] = None
        while len(seen) > SEEN_PER_GATE:
            seen.popitem(last=False)
        return False

    async def execute(self, command: Command) -> CommandResult:
        gate = self.gates.get(command.device)
        mqtt = self._mqtt
        if gate is None or command.action not in ACTIONS:
            return CommandResult(CommandStatus.FAILED,
                                 f"{command.device} takes no {command.action!r} here")
        if mqtt is None:
            return CommandResult(CommandStatus.FAILED, "no link to the broker")
        body = json.dumps({"action": ACTIONS[command.action], "why": command.why[:200]},
                          ensure_ascii=False).encode()
        # Queued before the publish: the controller's report of this move can only come
        # after it, so the rules judge that report against this command.
        await self._told(gate, command.action, "sent", "")
        try:
            async with asyncio.timeout(PUBACK_TIMEOUT_S):
                await mqtt.publish(f"{gate.topic}/command", body, qos=1)
        except (TimeoutError, Unreachable) as exc:
            result = CommandResult(CommandStatus.FAILED, f"not published: {exc!r}"[:200])
        else:
            result = CommandResult(CommandStatus.UNVERIFIED, "published to the controller")
        # The result is an event too, so the rules see it (the fire hold's confirmation).
        await self._told(gate, command.action, result.status.value, result.detail)
        return result

    async def _told(self, gate: ControllerSpec, action: str, status: str, detail: str) -> None:
        await self._sink.event(Event(
            "gate.state", gate.id, seq=self._sink.next_seq(gate.id), time=self._clock.now(),
            zone=gate.zone, data={"state": "unknown", "commanded": action, "status": status,
                                  "detail": detail}))
