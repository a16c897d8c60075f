"""The gateway end to end, over a real mosquitto: fire -> event + alert in SQLite -> alert
on the broker, and what must not lose an alarm: broker outage, half-open link."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp

from tests.brokers import Mosquitto
from tests.harness import PREFIX, DeskSubscriber, detectors, running_gateway, write_site
from tests.mqtt_client import mqtt_client
from tests.proxy import BlackHoleProxy


def db_rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def test_a_fire_becomes_an_alert_on_the_broker_and_in_sqlite(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port))
    async with (
        DeskSubscriber(mosquitto.host, mosquitto.port) as desk,
        running_gateway(site) as gw,
        detectors(mosquitto.host, mosquitto.port) as hd,
    ):
        await hd.send("hd-02", 24.0)
        await hd.send("hd-02", 61.0, alarm=True)
        await desk.wait_for(lambda d: "fire.alarm:hd-02" in d.alert_keys("raised"))
        raised = next(m for m in desk.messages if m["change"] == "raised"
                      and m["alert"]["key"] == "fire.alarm:hd-02")
        assert raised["_topic"] == f"{PREFIX}/alert/hd-02"
        assert raised["alert"]["severity"] == "critical"
        assert raised["alert"]["zone"] == "main-office-a"
        async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{gw.http_port}/api/alerts?state=firing"
        ) as response:
            feed = await response.json()
        # The desk reads the zone's name from the site file, not its id.
        assert [(a["key"], a["zone_name"]) for a in feed["active"]] == [
            ("fire.alarm:hd-02", "Office building A")]

        await hd.send("hd-02", 30.0, alarm=False)
        await desk.wait_for(lambda d: "fire.alarm:hd-02" in d.alert_keys("cleared"))
        cleared = next(m for m in desk.messages if m["change"] == "cleared"
                       and m["alert"]["key"] == "fire.alarm:hd-02")
        assert cleared["alert"]["id"] == raised["alert"]["id"]
        db = gw.db_path
    events = db_rows(db, "select kind, source, seq from events where source='hd-02' order by seq")
    assert events == [("fire.detector.alarm", "hd-02", 1),
                      ("fire.detector.alarm_cleared", "hd-02", 2)]
    alerts = db_rows(db, "select id, state from alerts where key='fire.alarm:hd-02'")
    assert alerts == [(raised["alert"]["id"], "resolved")]
    assert db_rows(db, "select count(*) from outbox") == [(0,)]  # every row acked, deleted


async def test_broker_outage_loses_no_alert(tmp_path: Path) -> None:
    """The upstream broker is down for about 10 s while detectors alarm on the site broker."""
    with Mosquitto() as site_broker, Mosquitto(persistent=True) as upstream:
        site = write_site(tmp_path, devices=(site_broker.host, site_broker.port),
                          upstream=(upstream.host, upstream.port), detectors=6,
                          keepalive_s=5, publish_timeout_s=2.0)
        async with (
            DeskSubscriber(upstream.host, upstream.port) as desk,
            running_gateway(site) as gw,
            detectors(site_broker.host, site_broker.port) as hd,
        ):
            await hd.send("hd-01", 62.0, alarm=True)
            await desk.wait_for(lambda d: len(d.messages) >= 1)
            upstream.stop()
            for n in range(2, 7):
                await hd.send(f"hd-{n:02d}", 60.0 + n, alarm=True)
                await asyncio.sleep(2)
            await hd.send("hd-01", 25.0, alarm=False)
            expected = {f"fire.alarm:hd-{n:02d}" for n in range(1, 7)}
            async with asyncio.timeout(10):
                while len([r for r in db_rows(gw.db_path, "select key from alerts")
                           if r[0] in expected]) < 6:
                    await asyncio.sleep(0.1)
            waiting = db_rows(gw.db_path, "select count(*) from outbox")[0][0]
            assert isinstance(waiting, int) and waiting >= 6  # held durably while away
            upstream.start()
            back = asyncio.get_running_loop().time()
            await desk.wait_for(
                lambda d: expected <= set(d.alert_keys("raised"))
                and "fire.alarm:hd-01" in d.alert_keys("cleared"), timeout=60)
            # The reconnect backoff is capped for broker links: a broker that is back is
            # used within seconds, however long it was away (the desk reconnects too).
            took = asyncio.get_running_loop().time() - back
            assert took <= 5.0, f"queued alarms reached the desk {took:.1f} s after the return"
            async with asyncio.timeout(15):
                while db_rows(gw.db_path, "select count(*) from outbox")[0][0] != 0:
                    await asyncio.sleep(0.1)
            stored = {r[0]: r[1] for r in db_rows(gw.db_path, "select key, id from alerts")}
    # Duplicates are allowed only as the same alert id with the same change.
    by_key: dict[str, set[str]] = {}
    for m in desk.messages:
        by_key.setdefault(m["alert"]["key"], set()).add(m["alert"]["id"])
    for key in expected:
        assert by_key[key] == {stored[key]}, key


async def test_half_open_link_loses_no_alert(tmp_path: Path) -> None:
    """Packets to the upstream broker are black-holed (no RST, no FIN) for 12 s."""
    with Mosquitto() as site_broker, Mosquitto() as upstream:
        proxy = BlackHoleProxy(upstream.host, upstream.port)
        await proxy.start()
        site = write_site(tmp_path, devices=(site_broker.host, site_broker.port),
                          upstream=(proxy.host, proxy.port), detectors=5,
                          keepalive_s=5, publish_timeout_s=2.0)
        try:
            async with (
                DeskSubscriber(upstream.host, upstream.port) as desk,
                running_gateway(site) as gw,
                detectors(site_broker.host, site_broker.port) as hd,
            ):
                await hd.send("hd-01", 62.0, alarm=True)
                await desk.wait_for(lambda d: "fire.alarm:hd-01" in d.alert_keys())
                proxy.black_hole = True
                for n in range(2, 6):
                    await hd.send(f"hd-{n:02d}", 60.0 + n, alarm=True)
                    await asyncio.sleep(3)
                proxy.black_hole = False
                expected = {f"fire.alarm:hd-{n:02d}" for n in range(1, 6)}
                await desk.wait_for(lambda d: expected <= set(d.alert_keys()), timeout=60)
                async with asyncio.timeout(15):
                    while db_rows(gw.db_path, "select count(*) from outbox")[0][0] != 0:
                        await asyncio.sleep(0.1)
                restarts = next(s.restarts for s in gw.supervisors if s.name == "forward:desk")
        finally:
            await proxy.stop()
    assert restarts >= 1  # the dead link was noticed and dropped, not waited on forever


async def test_malformed_payloads_are_counted_logged_once_and_the_daemon_goes_on(
    mosquitto: Mosquitto, tmp_path: Path, caplog: object
) -> None:
    import logging

    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    caplog.set_level(logging.WARNING, logger="gateway.ingest")
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port))
    bad = {
        "bad_json": b'{"seq": 1, "temp_c": 2',
        "wrong_type": json.dumps({"seq": 1, "temp_c": "hot", "alarm": "yes",
                                  "battery_pct": 9}).encode(),
        "out_of_range": json.dumps({"seq": 1, "temp_c": 1e308, "alarm": False,
                                    "battery_pct": 10**12}).encode(),
        "not_object": b"[1, 2]",
        "missing_field": b'{"seq": 1}',
        "oversize": b'{"pad": "' + b"x" * 300_000 + b'"}',
    }
    async with (
        DeskSubscriber(mosquitto.host, mosquitto.port) as desk,
        running_gateway(site) as gw,
        detectors(mosquitto.host, mosquitto.port) as hd,
        mqtt_client(mosquitto.host, mosquitto.port) as raw,
    ):
        for _ in range(3):  # three times each: counted three times, logged once
            for payload in bad.values():
                await raw.publish("furong/fire/heat/hd-03", payload, qos=1)
            await raw.publish("furong/fire/heat/hd-nowhere-99",
                              b'{"seq":1,"temp_c":20,"alarm":true,"battery_pct":50}', qos=1)
        await hd.send("hd-04", 63.0, alarm=True)
        await desk.wait_for(lambda d: "fire.alarm:hd-04" in d.alert_keys())
        page = gw.metrics.render()[0].decode()
    for reason in [*bad, "unknown_device"]:
        line = f'gateway_payloads_rejected_total{{driver="mqtt",reason="{reason}"}} 3.0'
        assert line in page, reason
    logged = [r.getMessage() for r in caplog.records if "payload rejected" in r.getMessage()]
    assert len(logged) == len(bad) + 1
    assert all("hd-03" in m or "hd-nowhere-99" in m for m in logged)


async def test_half_open_ingest_link_is_dropped_and_queued_alarms_arrive(
    tmp_path: Path,
) -> None:
    """The gateway's link to the site broker is black-holed. Its keep-alive notices the
    silence, and the alarms detectors sent meanwhile wait in its persistent session."""
    with Mosquitto() as broker:
        proxy = BlackHoleProxy(broker.host, broker.port)
        await proxy.start()
        site = write_site(tmp_path, devices=(proxy.host, proxy.port),
                          upstream=(broker.host, broker.port), detectors=4, keepalive_s=5)
        try:
            async with (
                DeskSubscriber(broker.host, broker.port) as desk,
                running_gateway(site) as gw,
                detectors(broker.host, broker.port) as hd,
            ):
                ingest = next(s for s in gw.supervisors if s.name == "mqtt:devices")
                proxy.black_hole = True
                for n in range(1, 5):
                    await hd.send(f"hd-{n:02d}", 62.0, alarm=True)
                async with asyncio.timeout(25):
                    while ingest.restarts == 0:
                        await asyncio.sleep(0.1)
                proxy.black_hole = False
                expected = {f"fire.alarm:hd-{n:02d}" for n in range(1, 5)}
                await desk.wait_for(lambda d: expected <= set(d.alert_keys()), timeout=30)
        finally:
            await proxy.stop()


async def test_a_silent_detector_becomes_stale_on_the_alert_and_state_topics(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port), detectors=2,
                      heartbeat_s=1.0)
    async with (
        DeskSubscriber(mosquitto.host, mosquitto.port, topic=f"{PREFIX}/#") as desk,
        running_gateway(site),
        detectors(mosquitto.host, mosquitto.port) as hd,
    ):
        await hd.send("hd-01", 22.0)
        await hd.send("hd-02", 22.0)
        # hd-02 keeps reporting; hd-01 says nothing more.
        for _ in range(6):
            await asyncio.sleep(1.0)
            await hd.send("hd-02", 22.0)
        await desk.wait_for(lambda d: "device.stale:hd-01" in d.alert_keys())
        await desk.wait_for(lambda d: any(
            m.get("state") == "stale" for m in d.messages
            if m["_topic"] == f"{PREFIX}/state/hd-01"))
        await hd.send("hd-01", 22.0)
        await desk.wait_for(lambda d: "device.stale:hd-01" in d.alert_keys("cleared"))
    assert "device.stale:hd-02" not in desk.alert_keys()
