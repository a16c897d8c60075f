"""Availability per lift and per building as the store keeps it: each tick's time put to
the lifts' states, split at minute boundaries, a stall left out; the rows written by the
store's writer and read back by the monthly report's `availability`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.alerts import AlertSignal
from gateway.events import Event, Severity
from gateway.lift_availability import AvailabilityLog, AvailabilityMinute
from gateway.lift_report import availability
from gateway.rules.elevator import ElevatorParams, ElevatorRules, LiftSpec
from gateway.store.schema import migrate

T0 = 1_790_000_000.0 - 1_790_000_000.0 % 60  # on a minute


def _log(states: list[tuple[str, str, str]]) -> AvailabilityLog:
    return AvailabilityLog(lambda: states)


def test_ticks_are_summed_per_minute_and_split_at_its_boundary() -> None:
    states = [("lift-1", "main", "available"), ("lift-2", "main", "unknown")]
    log = _log(states)
    for t in (T0 + 50, T0 + 51, T0 + 55, T0 + 59.5, T0 + 61):  # the first sample only starts
        log.sample(t)
    states[0] = ("lift-1", "main", "unavailable")
    log.sample(T0 + 62)
    assert log.flush_due(T0 + 62) == [
        AvailabilityMinute("lift", "lift-1", int(T0 // 60), 10.0, 0.0, 0.0),
        AvailabilityMinute("building", "main", int(T0 // 60), 10.0, 0.0, 10.0),
        AvailabilityMinute("lift", "lift-2", int(T0 // 60), 0.0, 0.0, 10.0),
    ]
    rest = {(m.scope, m.id): m for m in log.flush_all()}
    assert (rest["lift", "lift-1"].available_s, rest["lift", "lift-1"].unavailable_s) == (
        1.0, 1.0)
    assert rest["building", "main"].unknown_s == 2.0
    assert log.flush_all() == []


def test_a_stall_of_the_gateway_is_not_put_to_any_state() -> None:
    log = _log([("lift-1", "main", "available")])
    log.sample(T0)
    log.sample(T0 + 30)  # thirty seconds without a tick: nobody looked
    log.sample(T0 + 31)
    (lift, _building) = log.flush_all()
    assert (lift.available_s, lift.unavailable_s, lift.unknown_s) == (1.0, 0.0, 0.0)


def test_a_silent_or_unheard_box_is_unknown_never_available() -> None:
    rules = ElevatorRules(ElevatorParams(), [LiftSpec("lift-1", "z", "main", "otis")])
    assert rules.states() == [("lift-1", "main", "unknown")]
    status = {"moving": False, "door_open": True, "door_zone": True, "occupied": False,
              "mode": "normal", "power_loss": False, "floor": 1, "fault_code": 0}
    rules.observe(Event("elevator.status", "lift-1", 1, T0, Severity.INFO, "z", data=status), T0)
    assert rules.states() == [("lift-1", "main", "available")]
    rules.follow(AlertSignal("device.stale", "lift-1", "z", Severity.MAJOR, True, "silent"), T0)
    assert rules.states() == [("lift-1", "main", "unknown")]


def test_the_report_counts_silent_and_missing_minutes_apart(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    migrate(db, 0.0)
    minute = int(T0 // 60)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO availability_minutes VALUES (?, ?, ?, ?, ?, ?)",
            [("lift", "lift-1", minute, 60.0, 0.0, 0.0),
             ("lift", "lift-1", minute + 1, 30.0, 0.0, 30.0),  # the box fell silent
             ("lift", "lift-1", minute + 2, 0.0, 60.0, 0.0),
             # minute + 3: no row, the gateway was down
             ("building", "main", minute, 60.0, 60.0, 0.0)])
    with sqlite3.connect(db) as conn:
        one = availability(conn, "lift", "lift-1", T0, T0 + 3600, now=T0 + 240)
        main = availability(conn, "building", "main", T0, T0 + 3600, now=T0 + 60, lifts=2)
    assert one == {"available_min": 1.5, "unavailable_min": 1.0, "unknown_min": 1.5,
                   "ratio": 0.375, "ratio_known": 0.6}
    assert main["ratio"] == 0.5 and main["unknown_min"] == 0.0


@pytest.mark.parametrize("scope", ["lift", "building"])
def test_nothing_stored_is_all_unknown(tmp_path: Path, scope: str) -> None:
    db = tmp_path / "gateway.db"
    migrate(db, 0.0)
    with sqlite3.connect(db) as conn:
        got = availability(conn, scope, "x", T0, T0 + 3600, now=T0 + 600)
    assert got == {"available_min": 0.0, "unavailable_min": 0.0, "unknown_min": 10.0,
                   "ratio": 0.0, "ratio_known": None}
