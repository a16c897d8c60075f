"""The Modbus driver reads simulated lift boxes and a fire panel gateway over loopback:
one event per change (never one per poll), visits from the technician signal, and bad
status words (an unknown fault code, an impossible floor, contradictory bits) counted
once each while they last, the state still delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import MeterBinding, ModbusDriver
from drivers.modbus.profile import load_profile
from simulators.fire_panel import SimulatedPanel
from simulators.lifts import lift
from simulators.modbus_meters import MeterServer
from tests.test_modbus_driver import Link, Sink, _running, _until

PROFILES = Path(__file__).resolve().parent.parent / "config" / "profiles"


def _binding(device_id: str, kind: str, address: str, profile: str,
             **extra: Any) -> MeterBinding:
    device = ModbusDevice.model_validate({
        "driver": "modbus", "id": device_id, "kind": kind, "zone": "z", "address": address,
        "profile": profile, "poll_s": 0.1, "timeout_s": 0.5, **extra})
    return MeterBinding(device, load_profile(PROFILES / f"{profile}.yaml"))


LIFT = {"firm": "sanling", "floors": {"lowest": 1, "highest": 12}}


def _kinds(sink: Sink, source: str) -> list[str]:
    return [e.kind for e in sink.events if e.source == source]


async def test_lift_changes_visits_and_bad_words() -> None:
    box = lift("lift-1", "elevator-sanling", 1)
    async with MeterServer([box.meter]) as server:
        sink, link = Sink(), Link()
        driver = ModbusDriver("modbus:lifts", [_binding(
            "lift-1", "elevator", f"tcp://127.0.0.1:{server.port}/1", "elevator-sanling",
            lift=LIFT)], sink)
        async with _running(driver, link):
            await _until(lambda: _kinds(sink, "lift-1") == ["elevator.status"], "first")
            assert driver.scheduler is not None
            polls = driver.scheduler.polls
            await _until(lambda: driver.scheduler is not None
                         and driver.scheduler.polls >= polls + 10, "ten more polls")
            assert _kinds(sink, "lift-1") == ["elevator.status"]  # nothing changed

            box.visit(30)
            await _until(lambda: "elevator.visit.started" in _kinds(sink, "lift-1"), "visit")
            box.step(31 * 60, 3.0)
            await _until(lambda: "elevator.visit.ended" in _kinds(sink, "lift-1"), "left")
            ended = next(e for e in sink.events if e.kind == "elevator.visit.ended")
            assert ended.data["duration_s"] >= 0 and "started_at" in ended.data

            box.set_fault(99)  # no such code in the firmware 3 table
            box.meter.values["status_word"] = float(int(box.meter.values["status_word"]) | 6)
            box.meter.values["floor"] = 40.0  # the building has 12
            await _until(lambda: len(sink.rejects) >= 3, "three problems")
            polls = driver.scheduler.polls
            await _until(lambda: driver.scheduler is not None
                         and driver.scheduler.polls >= polls + 10, "ten more polls")
    reasons = sorted(r for _, r, _ in sink.rejects)
    # Each counted once, not once per poll while it lasts.
    assert reasons == ["contradictory_status", "impossible_floor", "unknown_fault_code"]
    last = [e for e in sink.events if e.kind == "elevator.status"][-1]
    assert last.data["fault"] == "unknown (code 99)" and last.data["fault_code"] == 99
    assert last.data["floor"] is None and last.data["direction"] == "unknown"
    assert sink.last("lift-1", "in_service") == 0.0
    assert sink.last("lift-1", "status_word") is None  # status words are events only


async def test_panel_points_become_events_with_their_severity() -> None:
    panel = SimulatedPanel()
    async with MeterServer([panel.meter]) as server:
        sink, link = Sink(), Link()
        driver = ModbusDriver("modbus:panel", [_binding(
            "fire-panel", "fire_panel", f"tcp://127.0.0.1:{server.port}/1",
            "fire-panel-gateway", panel={"points": [
                {"point": 1, "id": "sd-1", "zone": "z"},
                {"point": 2, "id": "mcp-1", "zone": "z", "kind": "manual_call_point"}]})],
            sink)
        async with _running(driver, link):
            await _until(lambda: {"sd-1", "mcp-1", "fire-panel"} <= {e.source
                                                                     for e in sink.events},
                         "first poll")
            first = len(sink.events)
            panel.alarm(1)
            panel.fault(2)
            panel.set_panel("main_power_fault")
            panel.alarm(9)  # a point the site file does not list
            await _until(lambda: len(sink.events) >= first + 3, "changes")
            await _until(lambda: any(r == "unknown_point" for _, r, _ in sink.rejects),
                         "unknown point")
            await asyncio.sleep(0.3)
    changes = {e.source: e for e in sink.events[first:]}
    assert changes["sd-1"].data["bits"] == ["fire"]
    assert changes["sd-1"].severity.label == "critical" and changes["sd-1"].zone == "z"
    assert changes["mcp-1"].data["bits"] == ["fault"]
    assert changes["mcp-1"].severity.label == "major"
    assert changes["fire-panel"].data["bits"] == ["main_power_fault"]
    assert len(sink.events) == first + 3
    assert [r for _, r, _ in sink.rejects] == ["unknown_point"]
