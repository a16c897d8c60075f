"""The stored gate reads the vehicle rules rebuild occupancy from at start: every plate
read and manual open still in the event store, oldest first, each with the decision
stored beside it (a `decision.open` audit row names the read's event id)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection
from pathlib import Path

from gateway.rules.vehicles import StoredRead

KINDS = ("gate.plate", "gate.manual_open")


def stored_reads(db_path: Path, pushed: Collection[str]) -> list[StoredRead]:
    """The gate reads in `db_path`, oldest first. A read of a camera in `pushed` (which
    awaits the rules' decision) opened exactly when a `decision.open` row names it; a
    gate controller's read carries no decision of its own (`opened` None)."""
    if not db_path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        opened = {event for (event,) in conn.execute(
            "SELECT json_extract(detail, '$.event') FROM audit WHERE action = 'decision.open'")}
        rows = conn.execute(
            "SELECT id, time, source, kind, data FROM events WHERE kind IN (?, ?)"
            " ORDER BY time, seq", KINDS).fetchall()
    return [StoredRead(time, source, kind, json.loads(data),
                       (event_id in opened) if source in pushed else None)
            for event_id, time, source, kind, data in rows]
