"""The lift and fire panel simulators: registers written as the profiles read them, the
day's traffic, fire recall, and the control lines the demo and benchmark send."""

from __future__ import annotations

from pathlib import Path

from drivers.modbus.status import ElevatorStatus, decode_lift
from gateway.config import load_site
from simulators.compound_lifts import CompoundLifts, apply
from simulators.fire_panel import SimulatedPanel
from simulators.lifts import LiftFleet, lift

ROOT = Path(__file__).resolve().parent.parent


def _state(profile: str) -> dict[str, object]:
    box = lift("l", profile, 1, highest=8)
    box.floor, box.occupied = 5, True
    box.trap()
    spec = box.meter.profile.status
    assert isinstance(spec, ElevatorStatus)
    decoded = decode_lift(spec, box.meter.values, lowest=-1, highest=12)
    assert decoded is not None and not decoded.problems
    return decoded.state.to_data()


def test_every_vendor_box_says_trapped_as_its_profile_reads_it() -> None:
    for profile in ("elevator-sanling", "elevator-otis", "elevator-jianghong"):
        state = _state(profile)
        assert (state["moving"], state["door_zone"], state["door_open"], state["occupied"],
                state["floor"]) == (False, False, False, True, 5), profile


def test_traffic_moves_lifts_and_recall_brings_them_home() -> None:
    lifts = [lift(f"l{n}", "elevator-otis", n, highest=10) for n in (1, 2)]
    fleet = LiftFleet(lifts, start_hour=8.5)
    for _ in range(600):
        fleet.step(1.0)
    assert all(x.trips > 0 and x.door_cycles > 0 for x in lifts)
    lifts[1].ignore_fire_return = True
    fleet.recall(True)
    for _ in range(60):
        fleet.step(1.0)
    home = lifts[0]
    assert (home.floor, home.door_open, home.mode) == (1, True, "fire_return")
    assert lifts[1].mode == "normal"


async def test_control_lines_reach_the_boxes() -> None:
    lifts = await CompoundLifts.start(load_site(ROOT / "config" / "site.yaml"))
    try:
        assert apply(lifts, "trap lift-main-05") == "ok"
        assert lifts.fleet.lifts["lift-main-05"].between_floors
        assert apply(lifts, "alarm sd-m-office-a") == "ok"
        assert lifts.panel is not None and lifts.panel.bits(1) == {"fire"}
        assert apply(lifts, "isolate mcp-h-office") == "ok"
        assert apply(lifts, "trap lift-nowhere").startswith("error: KeyError")
        assert apply(lifts, "dance lift-main-01") == "error: unknown action 'dance'"
        addresses = {d.address for d in lifts.site.devices_of("modbus")
                     if d.kind == "elevator"}
        assert len(addresses) == 12 and all("127.0.0.1" in a for a in addresses)
    finally:
        await lifts.stop()


def test_panel_points_and_panel_word() -> None:
    fired: list[tuple[int, bool]] = []
    panel = SimulatedPanel(on_fire=lambda p, on: fired.append((p, on)))
    panel.alarm(3)
    panel.isolate(3)
    panel.alarm(3, False)
    panel.set_panel("bus_fault")
    assert panel.bits(3) == {"isolated"} and fired == [(3, True), (3, False)]
    assert panel.meter.values["panel_status"] == 4.0
