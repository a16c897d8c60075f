"""The daemon runs one Modbus supervisor per endpoint, and meter readings reach the store."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from simulators.modbus_meters import MeterServer, meter
from tests.harness import plant_room_site, running_gateway


def _site(folder: Path, tcp_port: int, rtu_port: int) -> Path:
    path = plant_room_site(folder, f"""\
  - {{driver: modbus, id: em-lighting, kind: energy_meter, zone: main-plant-room,
     address: "tcp://127.0.0.1:{tcp_port}/1", profile: eastron-sdm630, poll_s: 0.2}}
  - {{driver: modbus, id: em-pumps, kind: energy_meter, zone: main-plant-room,
     address: "tcp://127.0.0.1:{tcp_port}/2", profile: chint-dtsu666, poll_s: 0.2}}
  - {{driver: modbus, id: wm-main, kind: water_meter, zone: main-plant-room,
     address: "rtu+tcp://127.0.0.1:{rtu_port}/3", profile: water-meter, poll_s: 0.2}}
""")
    return path


async def test_meter_readings_reach_the_store(tmp_path: Path) -> None:
    async with (
        MeterServer([meter("eastron-sdm630", 1), meter("chint-dtsu666", 2)]) as tcp,
        MeterServer([meter("water-meter", 3)], rtu=True) as rtu,
    ):
        site = _site(tmp_path, tcp.port, rtu.port)
        async with running_gateway(site) as gateway:
            names = sorted(s.name for s in gateway.supervisors)
            assert names == [f"modbus:rtu+tcp://127.0.0.1:{rtu.port}",
                             f"modbus:tcp://127.0.0.1:{tcp.port}"]
            db = gateway.db_path
            # Every link is up (the harness waited): each has answered. A few more polls,
            # then the shutdown flushes the minute being downsampled into the store.
            polls = tcp.requests + rtu.requests
            async with asyncio.timeout(20):
                while sum(server.requests for server in (tcp, rtu)) < polls + 20:
                    await asyncio.sleep(0.05)
    with sqlite3.connect(db) as conn:
        sources = {row[0] for row in conn.execute("SELECT DISTINCT source FROM readings")}
    assert sources == {"em-lighting", "em-pumps", "wm-main"}
    with sqlite3.connect(db) as conn:
        metrics = {row[0] for row in conn.execute(
            "SELECT DISTINCT metric FROM readings WHERE source = 'wm-main'")}
    assert {"flow_m3h", "water_total_m3", "water_total_m3_consumed", "status"} <= metrics


async def test_a_dead_meter_goes_stale_and_comes_back(tmp_path: Path) -> None:
    """A meter that stops answering is a gap in the figures: `device.stale` after 3 x its
    poll interval, cleared when it answers again; the others on its line stay up."""
    pumps = meter("chint-dtsu666", 2)
    async with (
        MeterServer([meter("eastron-sdm630", 1), pumps]) as tcp,
        MeterServer([meter("water-meter", 3)], rtu=True) as rtu,
    ):
        site = _site(tmp_path, tcp.port, rtu.port)
        async with running_gateway(site) as gateway:

            def stale() -> set[str]:
                return {a.source for a in gateway.book.active() if a.rule == "device.stale"}

            pumps.faults.dead = True
            async with asyncio.timeout(20):
                while stale() != {"em-pumps"}:
                    await asyncio.sleep(0.05)
            [alert] = [a for a in gateway.book.active() if a.source == "em-pumps"]
            assert "Energy meter em-pumps silent" in alert.summary
            pumps.faults.dead = False
            # Backed off while dead: found again within the back-off cap (60 s), here
            # within a few polls of 0.2 s.
            async with asyncio.timeout(30):
                while stale():
                    await asyncio.sleep(0.05)
