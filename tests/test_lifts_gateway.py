"""Lifts and the fire panel through real parts: pymodbus servers built from the profiles
(simulators.lifts, simulators.fire_panel), the Modbus driver over loopback sockets, the
daemon's rules and SQLite on disk, the desk API, and mosquitto for the heat detector."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from gateway.app import Gateway, Overrides
from gateway.cli import main as cli_main
from gateway.config import load_site
from gateway.lifts import report
from simulators.fire_panel import SimulatedPanel
from simulators.lifts import LiftFleet, SimulatedLift, lift
from simulators.modbus_meters import MeterServer
from tests.brokers import Mosquitto
from tests.harness import ROOT, DeskSubscriber, detectors

ENTRAPMENT_S = 5.0
DAY = 86400.0
SHANGHAI = ZoneInfo("Asia/Shanghai")


class OffsetClock:
    """Real time moved forward by `offset`: days pass for the calendar in a second."""

    def __init__(self, start: float | None = None) -> None:
        self.offset = 0.0 if start is None else start - time.time()

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


def _site(folder: Path, lifts_port: int, panel_port: int, broker: Mosquitto | None) -> Path:
    shutil.copytree(ROOT / "config" / "profiles", folder / "profiles", dirs_exist_ok=True)
    brokers = (f"brokers:\n  devices: {{host: {broker.host}, port: {broker.port}}}\n"
               if broker else "")
    detector = (
        "  - {driver: mqtt, id: hd-01, kind: heat_detector, zone: main-office-a,"
        " broker: devices, topic: furong/fire/heat/hd-01, detector_class: A1R,"
        " heartbeat_s: 30}\n") if broker else ""
    forwarding = "forwarding:\n  - {kind: mqtt, id: desk, broker: devices}\n" if broker else ""
    text = f"""\
site: {{id: furong-test, name: Furong test, timezone: Asia/Shanghai}}
gateway:
  data_dir: {folder / 'data'}
  http: {{host: 127.0.0.1, port: 0}}
{brokers}buildings:
  - id: main
    name: main compound
    zones:
      - {{id: main-office-a, name: Office building A, fire_triggers: 2}}
  - id: health
    name: public health building
    zones:
      - {{id: health-office, name: health offices}}
devices:
  - {{driver: modbus, id: lift-1, kind: elevator, zone: main-office-a, poll_s: 0.2,
     address: "tcp://127.0.0.1:{lifts_port}/1", profile: elevator-sanling,
     lift: {{firm: sanling, floors: {{lowest: 1, highest: 12}}, designated_floor: 1,
             fire_return_timeout_s: 10}}}}
  - {{driver: modbus, id: lift-2, kind: elevator, zone: main-office-a, poll_s: 0.2,
     address: "tcp://127.0.0.1:{lifts_port}/2", profile: elevator-otis,
     lift: {{firm: otis, floors: {{lowest: -1, highest: 12}}, designated_floor: 1,
             fire_return_timeout_s: 10}}}}
  - {{driver: modbus, id: lift-3, kind: elevator, zone: health-office, poll_s: 0.2,
     address: "tcp://127.0.0.1:{lifts_port}/3", profile: elevator-jianghong,
     lift: {{firm: jianghong, floors: {{lowest: 1, highest: 6}}}}}}
  - driver: modbus
    id: fire-panel
    kind: fire_panel
    zone: main-office-a
    address: "tcp://127.0.0.1:{panel_port}/1"
    profile: fire-panel-gateway
    poll_s: 0.2
    panel:
      points:
        - {{point: 1, id: sd-a-01, zone: main-office-a, name: smoke detector A 1F}}
        - {{point: 2, id: mcp-a-01, zone: main-office-a, kind: manual_call_point}}
        - {{point: 3, id: sd-h-01, zone: health-office}}
{detector}{forwarding}rules:
  elevator:
    entrapment_s: {ENTRAPMENT_S}
    stopped_outside_s: 5
    firms:
      sanling: {{name: 三凌 Sanling}}
      otis: {{name: 奥的斯 Otis}}
      jianghong: {{name: 江鸿 Jianghong}}
    maintenance: {{min_visit_min: 0}}
"""
    path = folder / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def _compound(tmp_path: Path, broker: Mosquitto | None = None,
                    clock: OffsetClock | None = None,
                    ) -> AsyncIterator[tuple[Gateway, LiftFleet, SimulatedPanel]]:
    lifts = [lift("lift-1", "elevator-sanling", 1), lift("lift-2", "elevator-otis", 2),
             lift("lift-3", "elevator-jianghong", 3, highest=6)]
    fleet = LiftFleet(lifts, speed=5.0, start_hour=3.0)  # 3 am: no traffic of its own
    panel = SimulatedPanel(on_fire=lambda _point, on: fleet.recall(on, ["lift-1", "lift-2"]))
    async with (MeterServer([x.meter for x in lifts]) as boxes,
                MeterServer([panel.meter]) as gateway_box):
        site_path = _site(tmp_path, boxes.port, gateway_box.port, broker)
        gw = Gateway(load_site(site_path), site_path, overrides=Overrides(http_port=0),
                     clock=clock)
        task = asyncio.create_task(gw.run(), name="gateway-under-test")
        try:
            async with asyncio.timeout(15):
                await gw.ready.wait()
                while gw.lifts is None or not all(
                        x["known"] for x in gw.lifts.elevator.snapshot()):
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.05)
            yield gw, fleet, panel
        finally:
            gw.request_shutdown()
            async with asyncio.timeout(10):
                await task


async def _get(gw: Gateway, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{gw.http_port}{path}") as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)
    assert check(), what


def _firing(gw: Gateway) -> set[str]:
    return {a.key for a in gw.book.active()}


async def test_entrapment_is_raised_after_t_and_cleared_at_a_landing(tmp_path: Path) -> None:
    async with _compound(tmp_path) as (gw, fleet, _panel):
        lift1, lift2 = fleet.lifts["lift-1"], fleet.lifts["lift-2"]
        trapped_at = time.time()
        lift1.trap()
        lift2.stop_outside_landing()
        await _until(lambda: "elevator.entrapment:lift-1" in _firing(gw), "entrapment")
        raised = next(a for a in gw.book.active() if a.key == "elevator.entrapment:lift-1")
        # Never before T: the stop must be held that long.
        assert raised.raised_at - trapped_at >= ENTRAPMENT_S - 0.5
        await _until(lambda: "elevator.stopped_outside_landing:lift-2" in _firing(gw),
                     "empty stop")
        # The empty stop is a fault, never an entrapment.
        assert "elevator.entrapment:lift-2" not in _firing(gw)
        feed = await _get(gw, "/api/alerts?state=firing")
        entrapment = next(a for a in feed["active"]
                          if a["key"] == "elevator.entrapment:lift-1")
        assert (entrapment["severity"], entrapment["zone_name"]) == ("critical",
                                                                    "Office building A")
        # Moving on to a landing with the doors shut does not clear it; opening them does.
        lift1.release()
        await _until(lambda: "elevator.entrapment:lift-1" not in _firing(gw), "cleared")
        lifts = await _get(gw, "/api/lifts")
        by_id = {x["lift"]: x for x in lifts["lifts"]}
        assert by_id["lift-2"]["available"] is False and by_id["lift-3"]["available"] is True
        _, page = await _metrics(gw)
        assert 'gateway_elevator_available{building="main",lift="lift-2"} 0.0' in page
        assert 'gateway_building_elevators_available_ratio{building="health"} 1.0' in page
        # Lift 3's box falls silent: from its silence on, its time is unknown, not available.
        fleet.lifts["lift-3"].meter.faults.dead = True
        await _until(lambda: "device.stale:lift-3" in _firing(gw), "silent box")
        await asyncio.sleep(1.5)
        db = gw.db_path
        site = gw.site
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT state, severity, cleared_at - raised_at FROM alerts"
                            " WHERE key = 'elevator.entrapment:lift-1'").fetchall()
        kinds = {r[0] for r in conn.execute(
            "SELECT kind FROM events WHERE source = 'lift-1'")}
        seconds = {(scope, ident): (up, down, unknown) for scope, ident, up, down, unknown in
                   conn.execute("SELECT scope, id, sum(available_s), sum(unavailable_s),"
                                " sum(unknown_s) FROM availability_minutes GROUP BY scope, id")}
    assert len(rows) == 1 and rows[0][0] == "resolved" and rows[0][1] == 3
    assert "elevator.status" in kinds
    assert seconds["lift", "lift-2"][1] >= 5.0  # stopped outside a landing
    assert seconds["lift", "lift-3"][0] > 0 and seconds["lift", "lift-3"][2] >= 1.0
    assert seconds["building", "health"] == seconds["lift", "lift-3"]
    up, down, _unknown = seconds["building", "main"]
    assert up > 0 and down > 0
    month = datetime.fromtimestamp(time.time(), SHANGHAI).strftime("%Y-%m")
    (three,) = report(site, db, "jianghong", month)["lifts"]
    counted = three["availability"]
    # The silent time and the rest of the month are unknown; what is known was available.
    assert counted["ratio_known"] == 1.0 and counted["unknown_min"] > 0
    assert counted["ratio"] is not None and counted["ratio"] < 1.0


async def _metrics(gw: Gateway) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{gw.http_port}/metrics") as response:
        return response.status, await response.text()


async def test_panel_and_detector_confirm_the_fire_and_fire_return_is_watched(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with (DeskSubscriber(mosquitto.host, mosquitto.port) as desk,
                _compound(tmp_path, mosquitto) as (gw, fleet, panel),
                detectors(mosquitto.host, mosquitto.port) as hd):
        lift1, lift2 = fleet.lifts["lift-1"], fleet.lifts["lift-2"]
        lift1.floor = 6
        lift2.ignore_fire_return = True
        lift2.floor = 4
        for x in (lift1, lift2):
            x.write()
        runner = asyncio.create_task(fleet.run(0.1))
        try:
            panel.alarm(1)  # a smoke detector of the panel: one trigger of two
            await _until(lambda: "fire.point.fire:sd-a-01" in _firing(gw), "panel fire")
            assert "fire.confirmed:main-office-a" not in _firing(gw)
            panel.isolate(3)  # a standing risk elsewhere
            await hd.send("hd-01", 62.0, alarm=True)
            await desk.wait_for(lambda d: "fire.confirmed:main-office-a" in d.alert_keys())
            await desk.wait_for(
                lambda d: "elevator.fire_return_failed:lift-2" in d.alert_keys(), timeout=40)
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        confirmed = next(m["alert"] for m in desk.messages
                         if m["alert"]["key"] == "fire.confirmed:main-office-a")
        assert confirmed["severity"] == "critical"
        assert confirmed["data"] == {"building": "main", "drill": False,
                                     "triggers": ["hd-01", "sd-a-01"]}
        failed = next(m["alert"] for m in desk.messages
                      if m["alert"]["key"] == "elevator.fire_return_failed:lift-2")
        assert "lift-2" in failed["summary"] and failed["severity"] == "critical"
        # lift-1 homed to floor 1 and opened: no alert names it; lift-3 is in another building.
        assert "elevator.fire_return_failed:lift-1" not in _firing(gw)
        assert "elevator.fire_return_failed:lift-3" not in _firing(gw)
        assert lift1.floor == 1 and lift1.door_open
        isolated = await _get(gw, "/api/fire/isolations")
        assert isolated["total"] == 1
        assert isolated["zones"][0]["zone"] == "health-office"
        assert isolated["zones"][0]["isolated"][0]["point"] == "sd-h-01"
        zones = await _get(gw, "/api/fire/zones")
        office = next(z for z in zones["zones"] if z["zone"] == "main-office-a")
        assert office["confirmed"] is True and office["triggers_needed"] == 2


async def test_a_skipped_visit_becomes_overdue_and_the_report_counts_the_visits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = datetime(2026, 11, 2, 10, 0, tzinfo=SHANGHAI).timestamp()
    clock = OffsetClock(start)
    async with _compound(tmp_path, clock=clock) as (gw, fleet, _panel):
        lift1, lift2 = fleet.lifts["lift-1"], fleet.lifts["lift-2"]
        lift2.skip_visits = True
        # Lifts never visited are due counting from the gateway's first tick.
        await _until(lambda: gw.lifts is not None and gw.lifts.maintenance.started, "ticking")

        async def visit(x: SimulatedLift) -> None:
            came = x.visit(minutes=30)
            if not came:
                return
            await _until(lambda: gw.lifts is not None and x.id in _on_site(gw), "on site")
            x.step(31 * 60, 3.0)  # half an hour of the technician's work
            await _until(lambda: gw.lifts is not None and x.id not in _on_site(gw), "left")

        await visit(lift1)
        await visit(lift2)  # the firm skips it
        clock.offset += 14 * DAY
        await visit(lift1)
        clock.offset += 1.5 * DAY
        await _until(lambda: "elevator.maintenance_overdue:lift-2" in _firing(gw), "overdue")
        await asyncio.sleep(1.5)  # two more ticks: nothing else may fall due
        assert "elevator.maintenance_overdue:lift-1" not in _firing(gw)
        async with aiohttp.ClientSession() as http:
            for query, status in (("firm=nobody&month=2026-11", 404),
                                  ("firm=otis&month=2026-13", 400), ("firm=otis", 400)):
                async with http.get(f"http://127.0.0.1:{gw.http_port}/api/lifts/report?"
                                    f"{query}") as response:
                    assert response.status == status, query
                    assert "error" in await response.json()
        sanling = await _get(gw, "/api/lifts/report?firm=sanling&month=2026-11")
        otis = await _get(gw, "/api/lifts/report?firm=otis&month=2026-11")
        db_dir = gw.db_path.parent
    (lift_1,) = sanling["lifts"]
    assert sanling["totals"]["visits"] == 2 and sanling["totals"]["missed"] == 0
    assert [v["counts"] for v in lift_1["visits"]] == [True, True]
    (lift_2,) = otis["lifts"]
    assert otis["totals"]["visits"] == 0
    assert [m["rule"] for m in lift_2["missed"]] == ["half-monthly (TSG T5002) 1st-15th"]
    assert {p["rule"] for p in lift_2["pending"]} == {"half-monthly (TSG T5002) 16th-end",
                                                      "monthly (site rule)"}
    # The same report from the command line, for the letter to the firm.
    code = cli_main(["lift-report", "--site", str(tmp_path / "site.yaml"), "--data-dir",
                     str(db_dir), "--firm", "sanling", "--month", "2026-11"])
    assert code == 0
    printed = json.load(io.StringIO(capsys.readouterr().out))
    assert printed["totals"]["visits"] == 2 and printed["firm_name"] == "三凌 Sanling"
    for firm, month in (("nobody", "2026-11"), ("otis", "November")):
        assert cli_main(["lift-report", "--site", str(tmp_path / "site.yaml"), "--data-dir",
                         str(db_dir), "--firm", firm, "--month", month]) == 2
    assert "unknown firm 'nobody'" in capsys.readouterr().err


def _on_site(gw: Gateway) -> set[str]:
    assert gw.lifts is not None
    return {str(x["lift"]) for x in gw.lifts.elevator.snapshot()
            if x["status"] and x["status"]["technician"]}


async def _start(site_path: Path) -> tuple[Gateway, asyncio.Task[None]]:
    gw = Gateway(load_site(site_path), site_path, overrides=Overrides(http_port=0))
    task = asyncio.create_task(gw.run())
    async with asyncio.timeout(15):
        await gw.ready.wait()
        while gw.lifts is None or not all(x["known"] for x in gw.lifts.elevator.snapshot()):
            await asyncio.sleep(0.05)
    return gw, task


async def _stop(gw: Gateway, task: asyncio.Task[None]) -> None:
    gw.request_shutdown()
    async with asyncio.timeout(10):
        await task


async def test_a_restart_rebuilds_the_fire_model_and_the_entrapment(tmp_path: Path) -> None:
    lifts = [lift("lift-1", "elevator-sanling", 1), lift("lift-2", "elevator-otis", 2),
             lift("lift-3", "elevator-jianghong", 3, highest=6)]
    panel = SimulatedPanel()
    async with MeterServer([x.meter for x in lifts]) as boxes, \
            MeterServer([panel.meter]) as gateway_box:
        site_path = _site(tmp_path, boxes.port, gateway_box.port, None)
        gw, task = await _start(site_path)
        try:
            panel.alarm(3)  # the health building's single-knock zone
            lifts[2].trap()
            await _until(lambda: {"fire.confirmed:health-office",
                                  "elevator.entrapment:lift-3"} <= _firing(gw), "raised")
            first = {a.key: a.id for a in gw.book.active()}
        finally:
            await _stop(gw, task)
        gw, task = await _start(site_path)
        try:
            # The same alerts go on (same ids): nothing raised twice after the restart.
            await asyncio.sleep(1.0)
            again = {a.key: a.id for a in gw.book.active()}
            assert again["fire.confirmed:health-office"] == first["fire.confirmed:health-office"]
            assert again["elevator.entrapment:lift-3"] == first["elevator.entrapment:lift-3"]
            panel.alarm(3, False)
            lifts[2].release()
            await _until(lambda: not {"fire.confirmed:health-office", "fire.point.fire:sd-h-01",
                                      "elevator.entrapment:lift-3"} & _firing(gw), "cleared")
            db = gw.db_path
        finally:
            await _stop(gw, task)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key, state FROM alerts WHERE key IN"
                            " ('fire.confirmed:health-office', 'elevator.entrapment:lift-3')"
                            " ORDER BY key").fetchall()
    assert rows == [("elevator.entrapment:lift-3", "resolved"),
                    ("fire.confirmed:health-office", "resolved")]
