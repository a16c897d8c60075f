"""The fire model's contract with the barrier linkage, through real parts: a fire bit on
the simulated fire panel gateway (a pymodbus server) is read by the Modbus driver, the
fire model confirms the zone's fire (`fire.confirmed`), and the gate linkage holds every
barrier with an API open (simulated barriers over HTTP), audited."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from gateway.app import Gateway, Overrides
from gateway.config import load_site
from simulators.fire_panel import SimulatedPanel
from simulators.gates import BarrierServer
from simulators.modbus_meters import MeterServer
from tests.gates_site import ENVIRON, GATES, until, write_site
from tests.harness import ROOT


def _with_panel(site_path: Path, port: int) -> None:
    text = site_path.read_text(encoding="utf-8")
    panel = (
        "devices:\n"
        "  - driver: modbus\n"
        "    id: fire-panel\n"
        "    kind: fire_panel\n"
        "    zone: main-gatehouse\n"
        f"    address: tcp://127.0.0.1:{port}/1\n"
        "    profile: fire-panel-gateway\n"
        "    poll_s: 0.2\n"
        "    panel:\n"
        "      points:\n"
        "        - {point: 1, id: mcp-gatehouse, zone: main-gatehouse, kind: manual_call_point}\n"
        "        - {point: 2, id: sd-parking-b1, zone: main-parking-b1}\n")
    site_path.write_text(text.replace("devices:\n", panel, 1), encoding="utf-8")


async def test_a_panel_fire_holds_the_barriers_open(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config" / "profiles", tmp_path / "profiles", dirs_exist_ok=True)
    barriers = BarrierServer([g for g, *_ in GATES])
    await barriers.start()
    panel = SimulatedPanel()
    try:
        async with MeterServer([panel.meter]) as box:
            site_path = write_site(tmp_path, barriers)
            _with_panel(site_path, box.port)
            gw = Gateway(load_site(site_path), site_path, overrides=Overrides(http_port=0),
                         environ=ENVIRON)
            task = asyncio.create_task(gw.run())
            try:
                async with asyncio.timeout(15):
                    await gw.ready.wait()
                    while gw.lifts is None or not any(
                            z["zone"] == "main-parking-b1"
                            for z in gw.lifts.fire_model.zone_state()):
                        await asyncio.sleep(0.05)
                panel.alarm(2)  # a smoke detector in car park B1: one trigger is enough there
                api_gates = [g for g, _v, _s, keys in GATES if "no_api" not in keys]
                await until(lambda: all(barriers.barriers[g].state == "open"
                                        and barriers.barriers[g].held for g in api_gates),
                            timeout=20)
                confirmed = [a for a in gw.book.active() if a.rule == "fire.confirmed"]
                assert [(a.source, a.data["triggers"], a.data["drill"]) for a in confirmed] == [
                    ("main-parking-b1", ["sd-parking-b1"], False)]
            finally:
                gw.request_shutdown()
                async with asyncio.timeout(10):
                    await task
    finally:
        await barriers.stop()
