"""The store's tables, the records that mirror them, and the numbered migrations.

A migration is applied once, in its own transaction together with its version row in
`migrations`; a database written by a newer gateway is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from gateway.errors import GatewayError


class StoreError(GatewayError):
    """The store cannot be used: closed, not opened, or written by a newer schema."""


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: str
    key: str
    rule: str
    source: str
    zone: str
    severity: int
    state: str  # "firing" | "resolved"
    raised_at: float
    cleared_at: float | None
    summary: str
    data: dict[str, Any]
    drill: bool


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    target: str
    lane: int
    topic: str
    payload: bytes
    retain: bool
    created_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A row its target refused for good (HTTP 4xx): moved out of the outbox."""

    id: int
    status: int | None  # the target's HTTP status
    reason: str  # short, for the operator: status, phrase and the start of the answer


@dataclass(frozen=True, slots=True)
class DeadOutboxRow:
    id: int
    target: str
    lane: int
    topic: str
    created_at: float
    attempts: int  # including the refused one
    dead_at: float
    status: int | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "target": self.target, "lane": self.lane, "topic": self.topic,
            "created_at": self.created_at, "attempts": self.attempts, "dead_at": self.dead_at,
            "status": self.status, "reason": self.reason,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class NewOutboxRow:
    target: str
    lane: int
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class DeviceStateRow:
    source: str
    state: str  # "up" | "degraded" | "down" | "stale"
    since: float
    detail: str
    last_seen: float | None


@dataclass(frozen=True, slots=True)
class AuditRow:
    time: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


# STRICT tables turn a wrongly typed value into an error at the writer instead of a
# silently mistyped row that every reader must then guard against.
_TABLES_V1 = (
    """CREATE TABLE events (
        id TEXT PRIMARY KEY,
        time REAL NOT NULL,
        source TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        zone TEXT NOT NULL,
        severity INTEGER NOT NULL,
        device_time REAL,
        data TEXT NOT NULL
    ) STRICT""",
    """CREATE TABLE readings (
        source TEXT NOT NULL,
        metric TEXT NOT NULL,
        minute INTEGER NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        avg REAL NOT NULL,
        last REAL NOT NULL,
        count INTEGER NOT NULL,
        unit TEXT NOT NULL,
        PRIMARY KEY (source, metric, minute)
    ) STRICT""",
    """CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        key TEXT NOT NULL,
        rule TEXT NOT NULL,
        source TEXT NOT NULL,
        zone TEXT NOT NULL,
        severity INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
        raised_at REAL NOT NULL,
        cleared_at REAL,
        summary TEXT NOT NULL,
        data TEXT NOT NULL,
        drill INTEGER NOT NULL
    ) STRICT""",
    """CREATE TABLE device_state (
        source TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        since REAL NOT NULL,
        detail TEXT NOT NULL,
        last_seen REAL
    ) STRICT""",
    # AUTOINCREMENT: an id is never reused after its row is acked and deleted, so a
    # late PUBACK for an old message can never delete a newer one.
    """CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        target TEXT NOT NULL,
        lane INTEGER NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        retain INTEGER NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    ) STRICT""",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    ) STRICT""",
)


def _v1_tables(db: sqlite_utils.Database) -> None:
    for ddl in _TABLES_V1:
        db.execute(ddl)
    db.table("events").create_index(["time"])
    db.table("events").create_index(["source", "seq"])
    db.table("events").create_index(["kind", "time"])
    db.table("alerts").create_index(["state"])
    db.table("alerts").create_index(["key"])
    db.table("outbox").create_index(["target", "lane", "id"])


def _v2_retention_indexes(db: sqlite_utils.Database) -> None:
    # Retention deletes readings oldest-minute first and the console lists the newest
    # alerts: without these both are full scans of tables that hold years.
    db.table("readings").create_index(["minute"])
    db.table("alerts").create_index(["raised_at"])


def _v3_dead_letters_and_outbox_indexes(db: sqlite_utils.Database) -> None:
    # Dead rows get a table of their own rather than a `dead_at` flag on `outbox`: the
    # forwarders' fetch, the per-scrape statistics and the size bound then read live rows
    # only, with no extra predicate to forget and no dead row counted as "waiting" (which
    # would keep the outbox-stuck alert firing for ever). The id is kept, so a dead row
    # names the same row the log line and the receiver's logs named.
    db.execute(
        """CREATE TABLE outbox_dead (
            id INTEGER PRIMARY KEY,
            target TEXT NOT NULL,
            lane INTEGER NOT NULL,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            retain INTEGER NOT NULL,
            created_at REAL NOT NULL,
            attempts INTEGER NOT NULL,
            dead_at REAL NOT NULL,
            status INTEGER,
            reason TEXT NOT NULL
        ) STRICT"""
    )
    db.table("outbox_dead").create_index(["target"])
    db.table("outbox_dead").create_index(["dead_at"])
    # Depth and oldest row per target, read on every scrape and health check: index
    # seeks per target instead of a scan of a table that grows during an outage.
    db.table("outbox").create_index(["target", "created_at"])
    # State rows (retained, not the alarm lane) in id order: the outbox bound drops them
    # oldest first without walking the alarms queued before them.
    db.execute("CREATE INDEX idx_outbox_states ON outbox (id) WHERE retain = 1 AND lane != 0")


def _v4_consumption_hours(db: sqlite_utils.Database) -> None:
    # The meters' continuous totals (`<counter>_consumed`) once an hour, kept for years:
    # a savings report compares a baseline year with the years after it, while minute
    # rows are cut by age (`readings_days`) and, first of all, by the size bound. The
    # newest minute of each hour wins. Filled from the minute rows already stored.
    db.execute(
        """CREATE TABLE consumption_hours (
            source TEXT NOT NULL,
            metric TEXT NOT NULL,
            hour INTEGER NOT NULL,
            minute INTEGER NOT NULL,
            last REAL NOT NULL,
            PRIMARY KEY (source, metric, hour)
        ) STRICT"""
    )
    db.table("consumption_hours").create_index(["hour"])
    db.execute(
        "INSERT INTO consumption_hours (source, metric, hour, minute, last)"
        " SELECT source, metric, minute / 60, max(minute), last FROM readings"
        " WHERE metric GLOB '*_consumed' GROUP BY source, metric, minute / 60"
    )


def _v5_availability_minutes(db: sqlite_utils.Database) -> None:
    # Seconds per minute that each lift, and each building's lifts together, were
    # available, unavailable or unknown (the box silent). The `in_service` readings exist
    # only for the minutes a box answered, so a silent box left no trace there; here the
    # silent time is written as such, and a minute with no row at all (the gateway down)
    # is unknown too.
    db.execute(
        """CREATE TABLE availability_minutes (
            scope TEXT NOT NULL CHECK (scope IN ('lift', 'building')),
            id TEXT NOT NULL,
            minute INTEGER NOT NULL,
            available_s REAL NOT NULL,
            unavailable_s REAL NOT NULL,
            unknown_s REAL NOT NULL,
            PRIMARY KEY (scope, id, minute)
        ) STRICT"""
    )
    db.table("availability_minutes").create_index(["minute"])


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1_tables,
    _v2_retention_indexes,
    _v3_dead_letters_and_outbox_indexes,
    _v4_consumption_hours,
    _v5_availability_minutes,
]
SCHEMA_VERSION = len(MIGRATIONS)


def applied_versions(db: sqlite_utils.Database) -> list[int]:
    if not db.table("migrations").exists():
        return []
    return [int(row[0]) for row in db.execute("SELECT version FROM migrations ORDER BY version")]


def migrate(path: Path, now: float, upto: int = SCHEMA_VERSION) -> list[int]:
    """Bring the database at `path` to version `upto`; returns the versions applied now."""
    db = sqlite_utils.Database(path, execute_plugins=False)
    try:
        db.enable_wal()
        with db.atomic():
            db.execute(
                "CREATE TABLE IF NOT EXISTS migrations ("
                "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL) STRICT"
            )
        done = applied_versions(db)
        if done and max(done) > SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {max(done)}, this gateway knows up to "
                f"{SCHEMA_VERSION}: refusing to open it"
            )
        applied: list[int] = []
        for version, step in enumerate(MIGRATIONS[:upto], start=1):
            if version in done:
                continue
            with db.atomic():
                step(db)
                db.execute(
                    "INSERT INTO migrations (version, applied_at) VALUES (?, ?)", [version, now]
                )
            applied.append(version)
        return applied
    finally:
        db.close()


def connect_writer(path: Path) -> sqlite3.Connection:
    """The only writing connection; autocommit mode so the writer owns BEGIN/COMMIT."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before its futures resolve; batching keeps it cheap.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    # The WAL is truncated back to this size after a checkpoint instead of staying
    # as large as the biggest transaction ever written.
    conn.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
    return conn


def connect_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection for the loop thread; WAL lets it read beside the writer."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    # Readers wait only during WAL recovery or a truncating checkpoint: briefly.
    conn.execute("PRAGMA busy_timeout=2000")
    return conn
