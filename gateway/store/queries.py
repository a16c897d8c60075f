"""The read side: small queries on a read-only connection, run on the loop thread."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from gateway.store.schema import AlertRecord, DeadOutboxRow, DeviceStateRow, OutboxRow

_ALERT_COLUMNS = (
    "id, key, rule, source, zone, severity, state, raised_at, cleared_at, summary, data, drill"
)
_EVENT_COLUMNS = ("id", "time", "source", "seq", "kind", "zone", "severity", "device_time", "data")


def _alert(row: tuple[Any, ...]) -> AlertRecord:
    return AlertRecord(
        id=row[0],
        key=row[1],
        rule=row[2],
        source=row[3],
        zone=row[4],
        severity=row[5],
        state=row[6],
        raised_at=row[7],
        cleared_at=row[8],
        summary=row[9],
        data=json.loads(row[10]),
        drill=bool(row[11]),
    )


def outbox_fetch(
    conn: sqlite3.Connection, target: str, limit: int, exclude: Collection[int]
) -> list[OutboxRow]:
    """The next rows for `target`, alarms first then oldest; `exclude` holds those in flight."""
    sql = (
        "SELECT id, target, lane, topic, payload, retain, created_at, attempts"
        " FROM outbox WHERE target = ?"
    )
    params: list[Any] = [target]
    if exclude:
        # One JSON parameter instead of one per id: the in-flight set can hold
        # thousands of ids during a drain, beyond SQLite's bound-parameter limit.
        sql += " AND id NOT IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(list(exclude)))
    sql += " ORDER BY lane, id LIMIT ?"
    params.append(limit)
    return [
        OutboxRow(
            id=row[0],
            target=row[1],
            lane=row[2],
            topic=row[3],
            payload=row[4],
            retain=bool(row[5]),
            created_at=row[6],
            attempts=row[7],
        )
        for row in conn.execute(sql, params)
    ]


# The distinct targets by skip-scan: each step is one seek in the (target, created_at)
# index to the next larger target, so the cost follows the number of targets (a handful),
# not the number of rows. A plain GROUP BY target reads every row of the index.
_TARGETS = """
WITH RECURSIVE targets(target) AS (
    SELECT min(target) FROM {table}
    UNION ALL
    SELECT (SELECT min(target) FROM {table} WHERE target > targets.target)
    FROM targets WHERE targets.target IS NOT NULL
)
"""
# Per target: the count walks only that target's range of the index; the oldest row is
# the first entry of the range.
_OUTBOX_STATS = _TARGETS.format(table="outbox") + """
SELECT target,
    (SELECT count(*) FROM outbox WHERE outbox.target = targets.target),
    (SELECT min(created_at) FROM outbox WHERE outbox.target = targets.target)
FROM targets WHERE target IS NOT NULL
"""
_DEAD_COUNTS = _TARGETS.format(table="outbox_dead") + """
SELECT target, (SELECT count(*) FROM outbox_dead WHERE outbox_dead.target = targets.target)
FROM targets WHERE target IS NOT NULL
"""


def outbox_stats(conn: sqlite3.Connection) -> dict[str, tuple[int, float | None]]:
    """target -> (rows waiting, created_at of the oldest), from the index only."""
    return {target: (depth, oldest) for target, depth, oldest in conn.execute(_OUTBOX_STATS)}


def outbox_dead_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """target -> dead-letter rows kept."""
    return dict(conn.execute(_DEAD_COUNTS))


def outbox_dead(conn: sqlite3.Connection, limit: int = 100) -> list[DeadOutboxRow]:
    """The newest dead-letter rows first."""
    rows = conn.execute(
        "SELECT id, target, lane, topic, created_at, attempts, dead_at, status, reason"
        " FROM outbox_dead ORDER BY dead_at DESC, id DESC LIMIT ?",
        [limit],
    )
    return [DeadOutboxRow(*row) for row in rows]


def active_alerts(conn: sqlite3.Connection) -> list[AlertRecord]:
    rows = conn.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE state = 'firing' ORDER BY raised_at, id"
    )
    return [_alert(row) for row in rows]


def recent_alerts(conn: sqlite3.Connection, limit: int = 200) -> list[AlertRecord]:
    rows = conn.execute(
        f"SELECT {_ALERT_COLUMNS} FROM alerts ORDER BY raised_at DESC, id DESC LIMIT ?", [limit]
    )
    return [_alert(row) for row in rows]


def events_for(
    conn: sqlite3.Connection, source: str | None = None, kind: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Newest first, optionally of one source and/or one kind."""
    where: list[str] = []
    params: list[Any] = []
    if source is not None:
        where.append("source = ?")
        params.append(source)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    sql = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY time DESC, id DESC LIMIT ?"
    params.append(limit)
    out: list[dict[str, Any]] = []
    for row in conn.execute(sql, params):
        event = dict(zip(_EVENT_COLUMNS, row, strict=True))
        event["data"] = json.loads(event["data"])
        out.append(event)
    return out


def last_seq(conn: sqlite3.Connection) -> dict[str, int]:
    """source -> highest seq stored, to restore a SeqCounter after a restart."""
    return dict(conn.execute("SELECT source, max(seq) FROM events GROUP BY source"))


def last_device_seq(conn: sqlite3.Connection) -> dict[str, int]:
    """source -> the highest device sequence number among its stored events.

    Every report that changed a flag left an event holding its `device_seq`. A report the
    broker sends again after a restart at or below that number is a repeat; one above it
    changed no flag when it was first handled, so judging it afresh cannot raise a false
    change either.
    """
    rows = conn.execute(
        "SELECT source, max(json_extract(data, '$.device_seq')) FROM events "
        "WHERE json_extract(data, '$.device_seq') IS NOT NULL GROUP BY source")
    return {str(source): int(seq) for source, seq in rows}


def device_states(conn: sqlite3.Connection) -> list[DeviceStateRow]:
    rows = conn.execute(
        "SELECT source, state, since, detail, last_seen FROM device_state ORDER BY source"
    )
    return [DeviceStateRow(*row) for row in rows]


def latest_readings(conn: sqlite3.Connection, metrics: Collection[str]
                    ) -> dict[tuple[str, str], tuple[int, float]]:
    """(source, metric) -> (minute, last value) of the newest stored minute, for these
    metrics (a meter's counters at start-up)."""
    if not metrics:
        return {}
    # SQLite takes the bare `last` from the row that holds max(minute).
    rows = conn.execute(
        "SELECT source, metric, max(minute), last FROM readings"
        " WHERE metric IN (SELECT value FROM json_each(?)) GROUP BY source, metric",
        [json.dumps(sorted(metrics))])
    return {(str(s), str(m)): (int(minute), float(last)) for s, m, minute, last in rows}


def reading_at(conn: sqlite3.Connection, source: str, metric: str, minute: int
               ) -> float | None:
    """The last value of one stored minute, or None."""
    row = conn.execute(
        "SELECT last FROM readings WHERE source = ? AND metric = ? AND minute = ?",
        [source, metric, minute]).fetchone()
    return None if row is None else float(row[0])


def minute_series(conn: sqlite3.Connection, source: str, metric: str, since_minute: int,
                  *, value: str = "avg") -> list[tuple[float, float]]:
    """(minute start in epoch seconds, avg or last) of one series from a minute on."""
    column = {"avg": "avg", "last": "last"}[value]
    rows = conn.execute(
        f"SELECT minute, {column} FROM readings WHERE source = ? AND metric = ?"
        " AND minute >= ? ORDER BY minute", [source, metric, since_minute])
    return [(minute * 60.0, float(v)) for minute, v in rows]


# Consumption per hour from a meter's hourly totals (`consumption_hours`): each hour adds
# what the total rose since the hour before it that has a row. A total that fell (a
# gateway restarted with no stored state) starts again from 0, so its new value is what
# it counted since.
_HOURLY = """
WITH rows AS (
    SELECT hour, last, lag(last) OVER (ORDER BY hour) AS prev,
        lag(hour) OVER (ORDER BY hour) AS prev_hour
    FROM consumption_hours WHERE source = ? AND metric = ? AND hour >= ? AND hour < ?
)
SELECT hour,
    CASE WHEN prev IS NULL THEN 0.0 WHEN last >= prev THEN last - prev ELSE last END,
    prev_hour
FROM rows WHERE hour >= ? ORDER BY hour
"""
# Hours before the first one asked for, so that it has a row to rise from (a meter off
# the line for days still counts in the hour it came back).
_LEAD_IN_HOURS = 7 * 24


def hourly_consumption(conn: sqlite3.Connection, source: str, metric: str, start_minute: int,
                       end_minute: int) -> dict[int, tuple[float, int | None]]:
    """epoch hour -> (what the total `metric` of `source` rose in it, the hour of the row
    before it), [start, end). A rise after a gap of several hours covers the whole gap."""
    start, end = start_minute // 60, -(-end_minute // 60)
    rows = conn.execute(_HOURLY, [source, metric, start - _LEAD_IN_HOURS, end, start])
    return {int(hour): (float(delta), None if prev is None else int(prev))
            for hour, delta, prev in rows}
