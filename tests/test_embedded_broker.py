"""Where no mosquitto binary exists, the demo runs on the embedded amqtt broker: the same
fire goes end to end through it."""

from __future__ import annotations

from pathlib import Path

from gateway.broker import LocalBroker, free_port
from tests.harness import DeskSubscriber, detectors, running_gateway, write_site


async def test_a_fire_goes_through_the_embedded_broker(tmp_path: Path) -> None:
    broker = LocalBroker(port=free_port(), mosquitto=False)
    await broker.start()
    try:
        assert broker.kind.startswith("amqtt")
        site = write_site(tmp_path, devices=(broker.host, broker.port), detectors=2)
        async with (
            DeskSubscriber(broker.host, broker.port) as desk,
            running_gateway(site),
            detectors(broker.host, broker.port) as hd,
        ):
            await hd.send("hd-01", 30.0, alarm=True)
            await desk.wait_for(lambda d: "fire.alarm:hd-01" in d.alert_keys())
            await hd.send("hd-01", 25.0, alarm=False)
            await desk.wait_for(lambda d: "fire.alarm:hd-01" in d.alert_keys("cleared"))
    finally:
        await broker.stop()
