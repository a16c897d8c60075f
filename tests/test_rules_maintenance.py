"""Maintenance calendar from tables: visits (technician signal) and days in, overdue
alerts out, per lift and firm."""

from __future__ import annotations

from gateway.events import Event, Severity
from gateway.rules.maintenance import (
    SITE_OVERDUE,
    TSG_OVERDUE,
    LiftMaintenance,
    MaintenanceParams,
    MaintenanceSpec,
)

DAY = 86400.0
LIFTS = [MaintenanceSpec("lift-1", "a", "sanling"), MaintenanceSpec("lift-2", "a", "otis")]


def visit(lift: str, ended: float, minutes: float) -> Event:
    return Event("elevator.visit.ended", lift, 1, ended, Severity.INFO, "a",
                 data={"ended_at": ended, "started_at": ended - minutes * 60,
                       "duration_s": minutes * 60})


def said(out: object) -> list[tuple[str, str, bool]]:
    return [(s.rule, s.source, s.active) for s in out]  # type: ignore[attr-defined]


def test_a_skipped_visit_becomes_overdue_at_15_and_30_days() -> None:
    m = LiftMaintenance(MaintenanceParams(), LIFTS)
    assert said(m.tick(0.0)) == []
    assert said(m.observe(visit("lift-1", 14 * DAY, 45), 14 * DAY)) == []
    assert said(m.tick(15 * DAY)) == []
    assert said(m.tick(15 * DAY + 1)) == [(TSG_OVERDUE, "lift-2", True)]
    assert said(m.tick(20 * DAY)) == []
    assert said(m.tick(30 * DAY + 1)) == [(TSG_OVERDUE, "lift-1", True),
                                          (SITE_OVERDUE, "lift-2", True)]
    # The firm comes: both of lift-2's alerts clear.
    assert said(m.observe(visit("lift-2", 31 * DAY, 60), 31 * DAY)) == [
        (TSG_OVERDUE, "lift-2", False), (SITE_OVERDUE, "lift-2", False)]


def test_a_key_turned_for_a_minute_is_no_visit() -> None:
    m = LiftMaintenance(MaintenanceParams(min_visit_min=10), LIFTS[:1])
    m.tick(0.0)
    m.observe(visit("lift-1", 10 * DAY, 1), 10 * DAY)
    assert said(m.tick(15 * DAY + 1)) == [(TSG_OVERDUE, "lift-1", True)]


def test_the_calendar_runs_from_the_stored_visits_and_first_sighting() -> None:
    m = LiftMaintenance(MaintenanceParams(), LIFTS, last_visits={"lift-1": 100 * DAY},
                        first_seen={"lift-2": 90 * DAY})
    assert said(m.tick(110 * DAY)) == [(TSG_OVERDUE, "lift-2", True)]
    cal = {c["lift"]: c for c in m.calendar(110 * DAY)}
    assert cal["lift-1"]["tsg_due"] == 115 * DAY and cal["lift-1"]["site_due"] == 130 * DAY
    assert cal["lift-2"]["overdue"] == [TSG_OVERDUE]


def test_overdue_signals_name_the_firm() -> None:
    m = LiftMaintenance(MaintenanceParams(), LIFTS[:1])
    m.tick(0.0)
    (signal,) = m.tick(16 * DAY)
    assert signal.severity is Severity.MAJOR and signal.data["firm"] == "sanling"
    assert "TSG T5002" in signal.summary and "sanling" in signal.summary
