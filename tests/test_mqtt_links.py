"""The MQTT links on paho, against a real mosquitto: what each side of the gateway does
when the broker loses its session, another client takes it over, a link goes silent,
the broker refuses a publish (MQTT 5), or the link needs TLS."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from drivers.mqtt.config import BrokerEndpoint
from drivers.mqtt.driver import MqttDeviceDriver
from drivers.mqtt.reports import DeviceBinding
from gateway.errors import SessionTakenOver, Unreachable
from gateway.forward.mqtt import MqttForwarder
from gateway.mqtt_loop import LinkOptions, MqttLink
from gateway.store import NewOutboxRow, Store, WriteBatch
from tests.brokers import Mosquitto
from tests.mqtt_client import mqtt_client
from tests.proxy import BlackHoleProxy
from tests.test_mqtt_driver import CODECS, Link, Sink

BINDING = DeviceBinding("hd-01", "main-office-a", "furong/fire/heat/hd-01", "heat-detector")


async def connect_once(ingest: MqttDeviceDriver) -> None:
    """One link: up, then stopped by the gateway (a restart)."""
    link = Link()
    task = asyncio.create_task(ingest.run(link))
    await asyncio.wait_for(link.is_up.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def driver(broker: Mosquitto | BlackHoleProxy, sink: Sink, keepalive_s: float = 12,
           client_id: str = "gw-ingest-links") -> MqttDeviceDriver:
    return MqttDeviceDriver("mqtt:site", BrokerEndpoint(broker.host, broker.port,
                                                         keepalive_s=keepalive_s,
                                                         client_id=client_id),
                            [BINDING], CODECS, sink, commit_timeout_s=2.0)


async def test_a_broker_that_lost_the_session_is_an_event() -> None:
    sink = Sink()
    with Mosquitto() as broker:  # no persistence: a restart forgets every session
        ingest = driver(broker, sink)
        link = Link()
        task = asyncio.create_task(ingest.run(link))
        await asyncio.wait_for(link.is_up.wait(), 10)
        broker.stop()
        with pytest.raises(Unreachable):
            await asyncio.wait_for(task, 10)
        broker.start()
        await connect_once(ingest)
    assert ingest.sessions_lost == 1
    assert [e.kind for e in sink.events] == ["mqtt.session.lost"]
    assert sink.events[0].data["broker"] == f"{broker.host}:{broker.port}"


async def test_a_persistent_session_that_survives_is_not_reported(tmp_path: Path) -> None:
    sink = Sink()
    with Mosquitto(persistent=True) as broker:
        ingest = driver(broker, sink)
        for _ in range(2):
            await connect_once(ingest)
    assert ingest.sessions_lost == 0 and sink.events == []


async def test_another_client_taking_the_session_is_recognised(mosquitto: Mosquitto) -> None:
    """A rogue client keeps connecting with the gateway's client id. The broker says so
    (MQTT 5, reason 0x8E) or, before mosquitto 2.0.15, just closes the link: then two
    drops in a row soon after connecting tell the same story."""
    ingest = driver(mosquitto, Sink(), client_id="gw-ingest-stolen")
    stop = asyncio.Event()

    async def rogue() -> None:
        while not stop.is_set():
            with contextlib.suppress(Unreachable):
                async with mqtt_client(mosquitto.host, mosquitto.port, "gw-ingest-stolen",
                                       protocol=5, clean_start=False) as link:
                    await asyncio.wait([asyncio.ensure_future(stop.wait()), link.lost],
                                       return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0.05)

    errors: list[Exception] = []
    thief = asyncio.create_task(rogue())
    try:
        async with asyncio.timeout(20):
            while not any(isinstance(e, SessionTakenOver) for e in errors):
                link = Link()
                try:
                    await ingest.run(link)
                except Unreachable as exc:
                    errors.append(exc)
    finally:
        stop.set()
        await thief
    assert isinstance(errors[-1], SessionTakenOver)
    assert "session" in str(errors[-1]) and "gw-ingest-stolen" in str(errors[-1])
    assert len(errors) <= 3  # recognised at the first or second drop, not after a flap


async def test_an_idle_black_holed_link_is_down_within_one_and_a_half_keepalives(
    mosquitto: Mosquitto,
) -> None:
    proxy = BlackHoleProxy(mosquitto.host, mosquitto.port)
    await proxy.start()
    try:
        keepalive = 2.0
        link = MqttLink(LinkOptions(proxy.host, proxy.port, "idle-forward",
                                    keepalive_s=keepalive))
        await link.connect()
        await asyncio.sleep(keepalive * 1.2)  # one PINGREQ/PINGRESP went through
        proxy.black_hole = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = await asyncio.wait_for(asyncio.shield(link.lost), keepalive * 4)
        took = loop.time() - started
        link.close()
    finally:
        await proxy.stop()
    assert isinstance(error, Unreachable) and "half-open" in str(error)
    # Silence is measured from the last word heard, before the black hole began; paho's
    # own check alone would take two keep-alives and more.
    assert took <= keepalive * 1.5 + 0.6, took


async def test_the_ingest_finds_an_idle_black_holed_link(mosquitto: Mosquitto) -> None:
    proxy = BlackHoleProxy(mosquitto.host, mosquitto.port)
    await proxy.start()
    try:
        ingest = driver(proxy, Sink(), keepalive_s=2.0)
        link = Link()
        task = asyncio.create_task(ingest.run(link))
        await asyncio.wait_for(link.is_up.wait(), 10)
        proxy.black_hole = True
        with pytest.raises(Unreachable, match="half-open"):
            await asyncio.wait_for(task, 8)
    finally:
        await proxy.stop()


# ---- the forwarder over MQTT 5 ------------------------------------------------------------

def outbox_rows(store: Store) -> list[tuple[int, str, int]]:
    with sqlite3.connect(store.path) as conn:
        return [(int(i), str(t), int(a)) for i, t, a in
                conn.execute("select id, topic, attempts from outbox")]


async def test_a_refused_publish_keeps_its_row_and_later_rows_go_on(tmp_path: Path) -> None:
    with Mosquitto(acl="topic write furong/gw1/alert/#\ntopic read #\n") as broker:
        store = Store(tmp_path / "gateway.db")
        store.open(asyncio.get_running_loop())
        try:
            rows = [NewOutboxRow("desk", 0, "furong/gw1/forbidden/x", b'{"n": 1}'),
                    NewOutboxRow("desk", 0, "furong/gw1/alert/fire", b'{"n": 2}')]
            await store.submit(WriteBatch(outbox=rows))
            delivered: list[str] = []
            fwd = MqttForwarder("desk", host=broker.host, port=broker.port, store=store,
                                on_delivered=lambda row, _t: delivered.append(row.topic))
            task = asyncio.create_task(fwd.run(Link()))
            async with asyncio.timeout(10):
                while not delivered or not any(a for _i, _t, a in outbox_rows(store)):
                    await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            left = outbox_rows(store)
        finally:
            await store.close()
    assert delivered == ["furong/gw1/alert/fire"]
    assert [(topic, attempts) for _id, topic, attempts in left] == [
        ("furong/gw1/forbidden/x", 1)]
