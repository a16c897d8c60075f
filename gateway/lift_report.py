"""The monthly lift compliance report per firm, from the store: visits (the box's
technician signal), missed visits against TSG T5002's half-monthly rule and the site's
monthly rule, faults, entrapments and time to restore, availability. The centre sends it
to the firm. Read-only: its own connection, never the writer's."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

# What counts as a fault of the lift in the report (an entrapment is listed on its own).
FAULT_RULES = ("elevator.fault", "elevator.stopped_outside_landing", "elevator.power_loss",
               "elevator.overspeed", "elevator.door_opened_while_moving",
               "elevator.moved_with_door_open", "elevator.door_stuck_open",
               "elevator.out_of_service",
               "elevator.fire_return_failed")
ENTRAPMENT = "elevator.entrapment"
# A technician arriving later than this after a fault is not counted as its response.
RESPONSE_WINDOW_S = 48 * 3600.0


@dataclass(frozen=True, slots=True)
class LiftOfFirm:
    id: str
    building: str
    zone: str


@contextmanager
def read_only(db: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:
        yield conn
    finally:
        conn.close()


def month_bounds(month: str, timezone: str) -> tuple[float, float, float]:
    """(start, the 16th, end) of a month such as "2026-11" in the site's time, as epochs."""
    try:
        year, mon = (int(p) for p in month.split("-"))
        start = datetime(year, mon, 1, tzinfo=ZoneInfo(timezone))
    except ValueError:
        raise ValueError(f"month must be YYYY-MM, not {month!r}") from None
    middle = start.replace(day=16)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.timestamp(), middle.timestamp(), end.timestamp()


def last_visits(conn: sqlite3.Connection, min_visit_s: float) -> dict[str, float]:
    """lift -> the end of its last visit long enough to count."""
    rows = conn.execute(
        "SELECT source, max(json_extract(data, '$.ended_at')) FROM events"
        " WHERE kind = 'elevator.visit.ended'"
        " AND coalesce(json_extract(data, '$.duration_s'), 1e12) >= ? GROUP BY source",
        [min_visit_s])
    return {str(s): float(t) for s, t in rows if t is not None}


def first_seen(conn: sqlite3.Connection) -> dict[str, float]:
    """lift -> when the store first heard its status."""
    rows = conn.execute("SELECT source, min(time) FROM events WHERE kind = 'elevator.status'"
                        " GROUP BY source")
    return {str(s): float(t) for s, t in rows}


def _visits(conn: sqlite3.Connection, lift: str, start: float, end: float,
            min_visit_s: float) -> list[dict[str, Any]]:
    out = []
    rows = conn.execute(
        "SELECT time, data FROM events WHERE source = ? AND kind = 'elevator.visit.ended'"
        " AND time >= ? AND time < ? ORDER BY time", [lift, start, end])
    for time, data in rows:
        visit = json.loads(data)
        began = visit.get("started_at")
        if began is None:  # the gateway restarted during the visit: its start is stored
            row = conn.execute(
                "SELECT max(time) FROM events WHERE source = ? AND kind ="
                " 'elevator.visit.started' AND time <= ?", [lift, time]).fetchone()
            began = row[0] if row and row[0] is not None else None
        ended = float(visit.get("ended_at", time))
        duration = None if began is None else ended - float(began)
        out.append({"started_at": began, "ended_at": ended,
                    "duration_min": None if duration is None else round(duration / 60, 1),
                    "counts": duration is None or duration >= min_visit_s})
    return out


def _response_s(conn: sqlite3.Connection, lift: str, raised: float) -> float | None:
    """From a fault to the firm's technician at the lift's box (its next visit)."""
    row = conn.execute(
        "SELECT min(time) FROM events WHERE source = ? AND kind = 'elevator.visit.started'"
        " AND time >= ? AND time < ?", [lift, raised, raised + RESPONSE_WINDOW_S]).fetchone()
    return None if row is None or row[0] is None else round(float(row[0]) - raised, 1)


def _alerts(conn: sqlite3.Connection, lift: str, rules: tuple[str, ...], start: float,
            end: float) -> list[dict[str, Any]]:
    marks = ", ".join("?" for _ in rules)
    rows = conn.execute(
        f"SELECT rule, raised_at, cleared_at, summary, drill FROM alerts WHERE source = ?"
        f" AND rule IN ({marks}) AND raised_at >= ? AND raised_at < ? ORDER BY raised_at",
        [lift, *rules, start, end])
    return [{"rule": rule, "raised_at": raised, "cleared_at": cleared, "summary": summary,
             "drill": bool(drill),
             "time_to_restore_s": None if cleared is None else round(cleared - raised, 1),
             "response_s": _response_s(conn, lift, raised)}
            for rule, raised, cleared, summary, drill in rows]


def availability(conn: sqlite3.Connection, scope: str, ident: str, start: float, end: float,
                 now: float, lifts: int = 1) -> dict[str, Any]:
    """Minutes known available, unavailable and unknown from `start` to `end` (or now): the
    time the box was silent, or the gateway down, is unknown, never available. `ratio` is
    the available share of the whole time, `ratio_known` of the time the state was known.
    A building's minutes are lift-minutes: `lifts` lifts for each minute of the period."""
    span = max(0.0, min(end, now) - start) * lifts
    row = conn.execute(
        "SELECT sum(available_s), sum(unavailable_s) FROM availability_minutes"
        " WHERE scope = ? AND id = ? AND minute >= ? AND minute < ?",
        [scope, ident, int(start // 60), int(end // 60)]).fetchone()
    up, down = float(row[0] or 0.0), float(row[1] or 0.0)
    unknown = max(0.0, span - up - down)
    return {"available_min": round(up / 60, 1), "unavailable_min": round(down / 60, 1),
            "unknown_min": round(unknown / 60, 1),
            "ratio": round(up / span, 4) if span else None,
            "ratio_known": round(up / (up + down), 4) if up + down else None}


def monthly_report(conn: sqlite3.Connection, *, firm: str, firm_name: str,
                   lifts: list[LiftOfFirm], month: str, timezone: str, now: float,
                   min_visit_s: float,
                   building_lifts: dict[str, int] | None = None) -> dict[str, Any]:
    """`building_lifts`: how many lifts each building has (all firms'), for its figures."""
    start, middle, end = month_bounds(month, timezone)
    periods = [("half-monthly (TSG T5002) 1st-15th", start, middle),
               ("half-monthly (TSG T5002) 16th-end", middle, end),
               ("monthly (site rule)", start, end)]
    per_lift = []
    totals = {"visits": 0, "missed": 0, "faults": 0, "entrapments": 0}
    restore_times: list[float] = []
    responses: list[float] = []
    for lift in lifts:
        visits = _visits(conn, lift.id, start, end, min_visit_s)
        counted = [v["ended_at"] for v in visits if v["counts"]]
        missed: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        for rule, lo, hi in periods:
            if any(lo <= t < hi for t in counted):
                continue
            (missed if hi <= now else pending).append(
                {"rule": rule, "from": lo, "to": hi})
        faults = _alerts(conn, lift.id, FAULT_RULES, start, end)
        entrapments = _alerts(conn, lift.id, (ENTRAPMENT,), start, end)
        restore_times += [a["time_to_restore_s"] for a in faults + entrapments
                          if a["time_to_restore_s"] is not None and not a["drill"]]
        responses += [a["response_s"] for a in faults + entrapments
                      if a["response_s"] is not None and not a["drill"]]
        totals["visits"] += len(counted)
        totals["missed"] += len(missed)
        totals["faults"] += len(faults)
        totals["entrapments"] += len(entrapments)
        per_lift.append({"lift": lift.id, "building": lift.building, "visits": visits,
                         "missed": missed, "pending": pending, "faults": faults,
                         "entrapments": entrapments,
                         "availability": availability(conn, "lift", lift.id, start, end,
                                                      now)})
    counts = building_lifts or {}
    buildings = [{"building": b, "lifts": counts.get(b, 1)}
                 | availability(conn, "building", b, start, end, now, counts.get(b, 1))
                 for b in sorted({lift.building for lift in lifts})]
    return {
        "firm": firm, "firm_name": firm_name, "month": month, "timezone": timezone,
        "from": start, "to": end, "generated_at": now, "lifts": per_lift,
        "buildings": buildings,
        "totals": totals | {
            "mean_time_to_restore_s": (round(sum(restore_times) / len(restore_times), 1)
                                       if restore_times else None),
            "mean_response_s": (round(sum(responses) / len(responses), 1)
                                if responses else None)},
    }
