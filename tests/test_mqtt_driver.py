"""The MQTT driver against a real mosquitto: a detector's QoS 1 report is acknowledged
only after its events are committed, so the broker sends it again after a failed commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from drivers.mqtt.config import BrokerEndpoint
from drivers.mqtt.driver import MqttDeviceDriver
from drivers.mqtt.heat_detector import HeatDetectorCodec, load_profile
from drivers.mqtt.reports import DeviceBinding
from gateway.errors import StoreFailed, Unreachable
from gateway.events import Event, Heartbeat, Reading, SeqCounter
from tests.brokers import Mosquitto
from tests.harness import report
from tests.mqtt_client import mqtt_client

PROFILE = load_profile(Path(__file__).parent.parent / "config/profiles/heat-detector.yaml")
CODECS = {"heat-detector": HeatDetectorCodec(PROFILE)}


class Sink:
    """The core's side of the contract, with commits we hold back or let through."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.telemetry_items: list[Reading | Heartbeat] = []
        self.rejects: list[str] = []
        self.duplicates = 0
        self.commit = True
        self.seq = SeqCounter()

    def telemetry(self, item: Reading | Heartbeat) -> None:
        self.telemetry_items.append(item)

    async def event(self, event: Event) -> None:
        self.events.append(event)

    def settle(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.commit:
            done.set_result(None)
        else:
            done.set_exception(StoreFailed("disk full"))
        return done

    def sequence(self, driver: str, source: str, *, lost: int = 0, duplicate: bool = False,
                 restarted: bool = False) -> None:
        self.duplicates += duplicate

    def next_seq(self, source: str) -> int:
        return self.seq.next(source)

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        self.rejects.append(reason)


class Link:
    def __init__(self) -> None:
        self.is_up = asyncio.Event()

    def up(self) -> None:
        self.is_up.set()

    def degraded(self, reason: str) -> None:
        raise AssertionError(reason)


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_a_report_whose_commit_failed_comes_again(mosquitto: Mosquitto) -> None:
    sink = Sink()
    driver = MqttDeviceDriver(
        "mqtt:site", BrokerEndpoint(mosquitto.host, mosquitto.port, client_id="gw-ingest-t"),
        [DeviceBinding("hd-01", "main-office-a", "furong/fire/heat/hd-01", "heat-detector")],
        CODECS, sink, commit_timeout_s=1.0,
    )
    # 1. The store does not commit: the alarm report is not acknowledged, the link drops.
    sink.commit = False
    link = Link()
    first = asyncio.create_task(driver.run(link))
    await asyncio.wait_for(link.is_up.wait(), 10)
    async with mqtt_client(mosquitto.host, mosquitto.port) as detector:
        await detector.publish("furong/fire/heat/hd-01", report(1, 30.0, alarm=True), qos=1)
    with pytest.raises(StoreFailed):
        await asyncio.wait_for(first, 10)
    assert [e.kind for e in sink.events] == ["fire.detector.alarm"]

    # 2. The store works again: the broker sends the same report again, and the alarm is
    #    raised again (the driver forgot the flag it never got committed).
    sink.commit = True
    second = asyncio.create_task(driver.run(Link()))
    await wait_until(lambda: len(sink.events) == 2)
    assert [e.kind for e in sink.events] == ["fire.detector.alarm"] * 2
    second.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await second

    # 3. Now acknowledged: a new session start brings nothing back.
    link = Link()
    third = asyncio.create_task(driver.run(link))
    await asyncio.wait_for(link.is_up.wait(), 10)
    await asyncio.sleep(0.5)
    third.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await third
    assert len(sink.events) == 2


async def test_unreachable_broker_is_reported_as_such() -> None:
    from tests.brokers import free_port

    driver = MqttDeviceDriver("mqtt:none", BrokerEndpoint("127.0.0.1", free_port()), [],
                              CODECS, Sink())
    with pytest.raises(Unreachable, match=r"broker 127\.0\.0\.1"):
        await driver.run(Link())


GATE_TOPIC = "furong/gates/gate-health-in"


async def test_gate_controllers_ride_the_detectors_connection(mosquitto: Mosquitto) -> None:
    """One connection per broker, both families behind the codec seam: a plate read whose
    commit failed is new again when the broker sends it once more; one committed is a
    repeat; a command goes out on `<topic>/command` and never comes back in as a report."""
    from drivers.mqtt.gate_codec import GateControllerCodec
    from gateway.commands import Command, CommandStatus

    sink = Sink()
    codecs = {**CODECS, "gate_controller": GateControllerCodec()}
    driver = MqttDeviceDriver(
        "mqtt:site", BrokerEndpoint(mosquitto.host, mosquitto.port, client_id="gw-ingest-g"),
        [DeviceBinding("hd-01", "main-office-a", "furong/fire/heat/hd-01", "heat-detector"),
         DeviceBinding("gate-health-in", "main-gatehouse", f"{GATE_TOPIC}/event",
                       "gate_controller", exact=True, driver="mqtt_gate")],
        codecs, sink, commit_timeout_s=1.0,
    )
    assert driver.gates == ["gate-health-in"]
    read = b'{"type": "plate", "plate": "\\u6e58A12345", "plate_id": "c-1"}'
    sink.commit = False
    link = Link()
    first = asyncio.create_task(driver.run(link))
    await asyncio.wait_for(link.is_up.wait(), 10)
    async with mqtt_client(mosquitto.host, mosquitto.port) as device:
        await device.publish(f"{GATE_TOPIC}/event", read, qos=1)
        with pytest.raises(StoreFailed):
            await asyncio.wait_for(first, 10)
        assert [e.kind for e in sink.events] == ["gate.plate"]

        sink.commit = True
        link = Link()
        second = asyncio.create_task(driver.run(link))
        await wait_until(lambda: len(sink.events) == 2)  # redelivered: new again
        assert sink.duplicates == 0
        await device.publish(f"{GATE_TOPIC}/event", read, qos=1)  # now a repeat
        await device.publish("furong/fire/heat/hd-01", report(1, 30.0, alarm=True), qos=1)
        await wait_until(lambda: len(sink.events) == 3)
        assert sink.duplicates == 1
        assert [e.kind for e in sink.events] == ["gate.plate"] * 2 + ["fire.detector.alarm"]

        told = await device.subscribe([(f"{GATE_TOPIC}/command", 1)])
        assert not told[0].is_failure
        result = await driver.execute(Command("gate-health-in", "open", who="rules",
                                              why="official car"))
        assert result.status is CommandStatus.UNVERIFIED
        [message] = await asyncio.wait_for(device.next_batch(), 5)
        assert message.topic == f"{GATE_TOPIC}/command"
        assert json.loads(message.payload) == {"action": "open", "why": "official car"}
        # The command is an event for the rules (sent, then its result); the published
        # message itself is not a report: nothing rejected, nothing decoded from it.
        await asyncio.sleep(0.3)
        commanded = [e.data for e in sink.events if e.data.get("commanded") == "open"]
        assert [d["status"] for d in commanded] == ["sent", "unverified"]
        assert sink.rejects == []
        refused = await driver.execute(Command("hd-01", "open", who="rules", why="x"))
        assert refused.status is CommandStatus.FAILED
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second
    down = await driver.execute(Command("gate-health-in", "open", who="rules", why="x"))
    assert (down.status, down.detail) == (CommandStatus.FAILED, "no link to the broker")
