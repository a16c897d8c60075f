"""The monthly firm report from a store on disk: visits, missed half-months and months,
faults and entrapments with their time to restore and the firm's response, availability;
the month taken in the site's time zone."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.lift_report import LiftOfFirm, month_bounds, monthly_report
from gateway.store.schema import migrate

TZ = "Asia/Shanghai"
H = 3600.0


def at(day: int, hour: float = 10.0, month: int = 11) -> float:
    return datetime(2026, month, day, tzinfo=ZoneInfo(TZ)).timestamp() + hour * H


def _store(path: Path) -> sqlite3.Connection:
    migrate(path, 0.0)
    conn = sqlite3.connect(path)
    seq = iter(range(1, 10_000))

    def event(kind: str, lift: str, time: float, **data: object) -> None:
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, 'z', 0, NULL, ?)",
                     [f"e{next(seq)}", time, lift, 0, kind, json.dumps(data)])

    def alert(rule: str, lift: str, raised: float, cleared: float | None,
              drill: bool = False) -> None:
        conn.execute("INSERT INTO alerts VALUES (?, ?, ?, ?, 'z', 2, ?, ?, ?, 's', '{}', ?)",
                     [f"a{next(seq)}", f"{rule}:{lift}", rule, lift,
                      "resolved" if cleared else "firing", raised, cleared, int(drill)])

    # lift-1: visits on the 3rd (45 min) and the 20th; a 2-minute key turn on the 10th.
    for day, minutes in ((3, 45), (20, 30), (10, 2)):
        event("elevator.visit.started", "lift-1", at(day))
        event("elevator.visit.ended", "lift-1", at(day) + minutes * 60,
              started_at=at(day), ended_at=at(day) + minutes * 60, duration_s=minutes * 60)
    # lift-2: no visit in November; one on 31 October at 23:00 Shanghai time.
    event("elevator.visit.ended", "lift-2", at(31, 23, month=10), ended_at=at(31, 23, 10),
          started_at=at(31, 22, 10), duration_s=3600)
    # A fault on lift-1 restored in 2 h, the technician there after 1 h; an entrapment
    # freed in 20 min; a drill; one still open.
    alert("elevator.fault", "lift-1", at(20, 9), at(20, 11))
    alert("elevator.entrapment", "lift-1", at(5, 8), at(5, 8) + 1200)
    alert("elevator.fire_return_failed", "lift-2", at(7), at(7) + 300, drill=True)
    alert("elevator.power_loss", "lift-2", at(25), None)
    # Availability: lift-1 available 3 minutes, out of service 1, silent half a minute;
    # nothing else is known of the month.
    minute = int(at(4) // 60)
    for n, (up, down, unknown) in enumerate(((60, 0, 0), (60, 0, 0), (0, 60, 0),
                                              (30, 0, 30), (30, 0, 0))):
        conn.execute("INSERT INTO availability_minutes VALUES ('lift', 'lift-1', ?, ?, ?, ?)",
                     [minute + n, up, down, unknown])
    conn.execute("INSERT INTO availability_minutes VALUES ('building', 'main', ?, 180, 60, 30)",
                 [minute])
    conn.commit()
    return conn


def test_the_month_of_two_lifts(tmp_path: Path) -> None:
    conn = _store(tmp_path / "gateway.db")
    report = monthly_report(conn, firm="otis", firm_name="Otis",
                            lifts=[LiftOfFirm("lift-1", "main", "z"),
                                   LiftOfFirm("lift-2", "main", "z")],
                            month="2026-11", timezone=TZ, now=at(2, month=12),
                            min_visit_s=600, building_lifts={"main": 2})
    one, two = report["lifts"]
    assert [(v["duration_min"], v["counts"]) for v in one["visits"]] == [
        (45.0, True), (2.0, False), (30.0, True)]
    assert one["missed"] == [] and one["pending"] == []
    assert [a["rule"] for a in one["faults"]] == ["elevator.fault"]
    assert (one["faults"][0]["time_to_restore_s"], one["faults"][0]["response_s"]) == (
        2 * H, 1 * H)
    assert one["entrapments"][0]["time_to_restore_s"] == 1200
    month_min = 30 * 24 * 60
    assert one["availability"] == {
        "available_min": 3.0, "unavailable_min": 1.0, "unknown_min": month_min - 4.0,
        "ratio": round(3 / month_min, 4), "ratio_known": 0.75}
    # 31 October 23:00 in Changsha is not November's visit.
    assert two["visits"] == []
    assert [m["rule"] for m in two["missed"]] == [
        "half-monthly (TSG T5002) 1st-15th", "half-monthly (TSG T5002) 16th-end",
        "monthly (site rule)"]
    assert [a["time_to_restore_s"] for a in two["faults"]] == [300, None]
    assert two["availability"]["ratio_known"] is None
    assert two["availability"]["unknown_min"] == month_min
    # The building's figures are lift-minutes: its two lifts for the whole month.
    (main,) = report["buildings"]
    assert (main["building"], main["lifts"], main["available_min"], main["unknown_min"]) == (
        "main", 2, 3.0, 2 * month_min - 4.0)
    totals = report["totals"]
    assert (totals["visits"], totals["missed"], totals["faults"], totals["entrapments"]) == (
        2, 3, 3, 1)
    # Drills and open faults are left out of the means.
    assert totals["mean_time_to_restore_s"] == (2 * H + 1200) / 2
    assert totals["mean_response_s"] == 1 * H


def test_periods_not_over_are_pending(tmp_path: Path) -> None:
    conn = _store(tmp_path / "gateway.db")
    report = monthly_report(conn, firm="otis", firm_name="Otis",
                            lifts=[LiftOfFirm("lift-2", "main", "z")], month="2026-11",
                            timezone=TZ, now=at(18), min_visit_s=600)
    (two,) = report["lifts"]
    assert [m["rule"] for m in two["missed"]] == ["half-monthly (TSG T5002) 1st-15th"]
    assert len(two["pending"]) == 2


@pytest.mark.parametrize("month", ["2026-13", "11-2026", "November", ""])
def test_a_bad_month_is_refused(month: str) -> None:
    with pytest.raises(ValueError, match="month must be YYYY-MM"):
        month_bounds(month, TZ)


def test_december_ends_at_new_year_in_the_site_time() -> None:
    start, middle, end = month_bounds("2026-12", TZ)
    assert start == datetime(2026, 12, 1, tzinfo=ZoneInfo(TZ)).timestamp()
    assert end == datetime(2027, 1, 1, tzinfo=ZoneInfo(TZ)).timestamp()
    assert middle == datetime(2026, 12, 16, tzinfo=ZoneInfo(TZ)).timestamp()
