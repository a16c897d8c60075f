"""Elevator rules from tables: status changes and time in, alert transitions out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.events import Event, Reading, Severity
from gateway.rules.elevator import ElevatorParams, ElevatorRules, LiftSpec

LIFT = LiftSpec("lift-1", "main-office-a", "main", "sanling", designated_floor=1,
                fire_return_timeout_s=60, rated_speed_mps=1.0)
OTHER = LiftSpec("lift-2", "main-office-a", "main", "otis", designated_floor=1,
                 fire_return_timeout_s=60)
PARAMS = ElevatorParams(entrapment_s=30, stopped_outside_s=60, overspeed_factor=1.15)

NORMAL: dict[str, Any] = {
    "moving": False, "direction": "none", "floor": 3, "door_open": False, "door_zone": True,
    "occupied": False, "technician": False, "power_loss": False, "mode": "normal",
    "fault_code": 0, "fault": ""}
TRAPPED = NORMAL | {"door_zone": False, "occupied": True}
EMPTY_STOP = NORMAL | {"door_zone": False}
OPEN_AT_LANDING = NORMAL | {"door_open": True}
RUNNING = NORMAL | {"moving": True, "direction": "up", "door_zone": False, "occupied": True}
HOME_OPEN = NORMAL | {"floor": 1, "door_open": True}


def status(data: dict[str, Any], t: float, source: str = "lift-1") -> Event:
    return Event("elevator.status", source, 1, t, Severity.INFO, "main-office-a", data=data)


def rules() -> ElevatorRules:
    return ElevatorRules(PARAMS, [LIFT, OTHER])


def said(out: Any) -> list[tuple[str, bool]]:
    return [(s.rule, s.active) for s in out]


# Steps: (time, status or "tick", expected (rule, active) transitions)
ENTRAPMENT_CASES = {
    "trapped for T is an entrapment, cleared only at a landing with doors open": [
        (0, NORMAL, []),
        (10, TRAPPED, []),
        (39, "tick", []),
        (40, "tick", [("elevator.entrapment", True)]),
        (41, "tick", []),
        # Moving to a landing does not clear it; doors closed at the landing neither.
        (50, RUNNING, []),
        (55, NORMAL | {"occupied": True}, []),
        (56, OPEN_AT_LANDING | {"occupied": True}, [("elevator.entrapment", False)]),
    ],
    "a short stop between floors is not an entrapment": [
        (0, TRAPPED, []),
        (20, RUNNING, []),
        (60, "tick", []),
    ],
    "an empty stop outside a landing is a fault, not an entrapment": [
        (0, EMPTY_STOP, []),
        (59, "tick", []),
        (60, "tick", [("elevator.stopped_outside_landing", True)]),
        (100, NORMAL, [("elevator.stopped_outside_landing", False)]),
    ],
    "inspection mode between landings is the technician's doing": [
        (0, TRAPPED | {"mode": "inspection"}, [("elevator.inspection", True)]),
        (100, "tick", []),
    ],
    "the doors opening at a landing before T ends the pending entrapment": [
        (0, TRAPPED, []),
        (20, OPEN_AT_LANDING, []),
        (100, "tick", []),
    ],
}


@pytest.mark.parametrize("steps", ENTRAPMENT_CASES.values(), ids=ENTRAPMENT_CASES.keys())
def test_entrapment_and_stops(steps: list[tuple[float, Any, list[tuple[str, bool]]]]) -> None:
    r = rules()
    for t, what, want in steps:
        out = r.tick(t) if what == "tick" else r.observe(status(what, t), t)
        assert said(out) == want, (t, what)


def test_entrapment_names_the_lift_floor_and_is_critical() -> None:
    r = rules()
    r.observe(status(TRAPPED | {"floor": 7}, 0), 0)
    (signal,) = r.tick(30)
    assert signal.severity is Severity.CRITICAL
    assert signal.source == "lift-1" and signal.zone == "main-office-a"
    assert "floor 7" in signal.summary and signal.data["building"] == "main"


DOOR_CASES = {
    "door opening during travel": (RUNNING, RUNNING | {"door_open": True},
                                   "elevator.door_opened_while_moving"),
    "car moving off with its door open": (OPEN_AT_LANDING, RUNNING | {"door_open": True},
                                          "elevator.moved_with_door_open"),
}


@pytest.mark.parametrize(("before", "after", "rule"), DOOR_CASES.values(), ids=DOOR_CASES.keys())
def test_door_and_car_never_move_together(before: dict[str, Any], after: dict[str, Any],
                                          rule: str) -> None:
    r = rules()
    r.observe(status(before, 0), 0)
    assert said(r.observe(status(after, 1), 1)) == [(rule, True)]
    assert said(r.observe(status(after, 2), 2)) == []
    assert said(r.observe(status(NORMAL, 3), 3)) == [(rule, False)]


@pytest.mark.parametrize(
    ("change", "rule", "severity"),
    [
        ({"power_loss": True}, "elevator.power_loss", Severity.MAJOR),
        ({"mode": "out_of_service"}, "elevator.out_of_service", Severity.MINOR),
        ({"mode": "inspection"}, "elevator.inspection", Severity.INFO),
        ({"fault_code": 3, "fault": "door will not close"}, "elevator.fault", Severity.MAJOR),
    ],
)
def test_flags_raise_and_clear(change: dict[str, Any], rule: str, severity: Severity) -> None:
    r = rules()
    r.observe(status(NORMAL, 0), 0)
    (up,) = r.observe(status(NORMAL | change, 1), 1)
    assert (up.rule, up.active, up.severity) == (rule, True, severity)
    assert r.snapshot()[0]["available"] is False
    (down,) = r.observe(status(NORMAL, 2), 2)
    assert (down.rule, down.active) == (rule, False)
    assert r.snapshot()[0]["available"] is True


def test_a_new_fault_code_clears_the_old_and_raises_the_new() -> None:
    r = rules()
    r.observe(status(NORMAL | {"fault_code": 3, "fault": "a"}, 0), 0)
    out = r.observe(status(NORMAL | {"fault_code": 99, "fault": "unknown (code 99)"}, 1), 1)
    assert said(out) == [("elevator.fault", False), ("elevator.fault", True)]
    assert out[1].data["fault"] == "unknown (code 99)"


def test_overspeed_from_the_speed_reading() -> None:
    r = rules()
    reading = lambda v: Reading("lift-1", "speed_mps", v, "m/s", 0)  # noqa: E731
    assert said(r.observe(reading(1.1), 0)) == []
    assert said(r.observe(reading(1.2), 0)) == [("elevator.overspeed", True)]
    assert said(r.observe(reading(1.05), 0)) == []
    assert said(r.observe(reading(0.9), 0)) == [("elevator.overspeed", False)]


def confirmed(active: bool, zone: str = "main-office-a", building: str = "main") -> AlertSignal:
    return AlertSignal("fire.confirmed", zone, zone, Severity.CRITICAL, active,
                       data={"building": building, "drill": False, "triggers": ["x"]})


def test_fire_return_names_the_lift_that_does_not_come_home() -> None:
    r = rules()
    r.observe(status(NORMAL, 0), 0)
    r.observe(status(NORMAL, 0, "lift-2"), 0)
    assert said(r.follow(confirmed(True), 10)) == []
    assert r.observe(status(HOME_OPEN, 40, "lift-2"), 40) == []  # lift-2 homes in time
    assert said(r.tick(69)) == []
    out = r.tick(70)
    assert said(out) == [("elevator.fire_return_failed", True)]
    assert out[0].source == "lift-1" and out[0].severity is Severity.CRITICAL
    assert "floor 1" in out[0].summary
    assert said(r.tick(80)) == []
    # It arrives late: the alert clears, saying so.
    assert said(r.observe(status(HOME_OPEN, 90), 90)) == [("elevator.fire_return_failed", False)]


def test_fire_return_ends_with_the_fire_and_ignores_other_buildings() -> None:
    r = rules()
    r.observe(status(NORMAL, 0), 0)
    r.follow(confirmed(True, building="health"), 0)
    assert said(r.tick(1000)) == []
    r.follow(confirmed(True), 0)
    r.follow(confirmed(True, zone="main-office-b"), 5)
    assert said(r.tick(60)) == [("elevator.fire_return_failed", True),
                                ("elevator.fire_return_failed", True)]
    assert said(r.follow(confirmed(False), 70)) == []  # office B still burns
    assert said(r.follow(confirmed(False, zone="main-office-b"), 80)) == [
        ("elevator.fire_return_failed", False), ("elevator.fire_return_failed", False)]


def test_a_lift_already_home_when_the_fire_is_confirmed_is_not_flagged() -> None:
    r = rules()
    r.observe(status(HOME_OPEN, 0), 0)
    r.observe(status(HOME_OPEN, 0, "lift-2"), 0)
    r.follow(confirmed(True), 1)
    assert said(r.tick(1000)) == []


def _alert(rule: str, source: str, raised_at: float = 0.0,
           data: dict[str, Any] | None = None) -> Alert:
    return Alert("id", f"{rule}:{source}", rule, source, "main-office-a", Severity.CRITICAL,
                 AlertState.FIRING, raised_at, None, "", data or {})


def test_restore_sees_the_clears_and_keeps_watching_fire_return() -> None:
    r = rules()
    r.restore([_alert("elevator.entrapment", "lift-1"),
               _alert("fire.confirmed", "main-office-a", 100.0, {"building": "main"})])
    # The driver's first poll after the restart: still trapped, so nothing new.
    assert said(r.observe(status(TRAPPED, 120), 120)) == []
    assert said(r.tick(150)) == []
    assert said(r.tick(160)) == [("elevator.fire_return_failed", True),
                                 ("elevator.fire_return_failed", True)]
    assert said(r.observe(status(OPEN_AT_LANDING | {"floor": 1}, 170), 170)) == [
        ("elevator.entrapment", False), ("elevator.fire_return_failed", False)]


BOOL = st.booleans()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(BOOL, BOOL, BOOL, BOOL, st.integers(0, 40)), min_size=1, max_size=30))
def test_entrapment_fires_only_after_t_and_clears_only_at_an_open_landing(
        steps: list[tuple[bool, bool, bool, bool, int]]) -> None:
    r = rules()
    t = 0.0
    firing = False
    for moving, door_open, zone, occupied, wait in steps:
        data = NORMAL | {"moving": moving, "door_open": door_open, "door_zone": zone,
                         "occupied": occupied}
        out = [*r.observe(status(data, t), t)]
        t += wait
        out += r.tick(t)
        for s in out:
            if s.rule != "elevator.entrapment":
                continue
            if s.active:
                assert not firing
                assert not moving and not door_open and not zone and occupied
                assert wait >= PARAMS.entrapment_s or t >= PARAMS.entrapment_s
            else:
                assert firing and door_open and zone
            firing = s.active


def test_each_poll_judges_the_timer_without_waiting_for_the_tick() -> None:
    r = rules()
    r.observe(status(TRAPPED, 0), 0)
    def poll(t: float) -> Reading:
        return Reading("lift-1", "in_service", 1.0, "", t)

    assert said(r.observe(poll(29.0), 29.1)) == []
    # The poll T after the first that saw it decides, a few ms of jitter early or not.
    assert said(r.observe(poll(29.98), 30.0)) == [("elevator.entrapment", True)]
    assert said(r.tick(31.0)) == []


def test_a_silent_box_is_not_counted_available() -> None:
    r = rules()
    r.observe(status(NORMAL, 0), 0)
    assert r.snapshot()[0]["available"] is True
    stale = AlertSignal("device.stale", "lift-1", "main-office-a", Severity.MAJOR, True)
    assert said(r.follow(stale, 10)) == []
    assert r.snapshot()[0]["available"] is False
    r.follow(AlertSignal("device.stale", "lift-1", "main-office-a", Severity.MAJOR, False), 11)
    assert r.snapshot()[0]["available"] is True


def test_a_drill_fire_return_failure_is_a_drill() -> None:
    r = rules()
    r.observe(status(NORMAL, 0), 0)
    drill = AlertSignal("fire.confirmed", "main-drill", "main-drill", Severity.CRITICAL, True,
                        data={"building": "main", "drill": True, "triggers": ["x"]})
    r.follow(drill, 0)
    out = r.tick(60)
    assert {(s.source, s.zone, s.data["drill"]) for s in out} == {
        ("lift-1", "main-drill", True), ("lift-2", "main-drill", True)}
