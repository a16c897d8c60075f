"""The SQLite store on disk: round trips, batching, durability, retention, migration."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.errors import StoreFailed
from gateway.events import Event, Lane, Severity
from gateway.lift_availability import AvailabilityMinute
from gateway.store import (
    SCHEMA_VERSION,
    AlertRecord,
    AuditRow,
    DeadLetter,
    DeviceStateRow,
    MinuteAggregate,
    NewOutboxRow,
    Retention,
    Store,
    StoreError,
    WriteBatch,
    queries,
)
from gateway.store.schema import migrate

T0 = 1_764_000_000.0
DAY = 86_400.0
REPO = Path(__file__).resolve().parents[1]


def event(
    source: str, seq: int, at: float, kind: str = "fire.detector.alarm", **data: Any
) -> Event:
    return Event(
        kind=kind, source=source, seq=seq, time=at, severity=Severity.CRITICAL, zone="b1-f1",
        data=dict(data),
    )  # fmt: skip


def alert(
    id: str, state: str = "firing", raised_at: float = T0, cleared_at: float | None = None
) -> AlertRecord:
    return AlertRecord(
        id=id, key=f"fire.static:{id}", rule="fire.static", source="hd-b1-01", zone="b1-f1",
        severity=int(Severity.CRITICAL), state=state, raised_at=raised_at, cleared_at=cleared_at,
        summary="58.0 C over 56.0 C", data={"celsius": 58.0}, drill=False,
    )  # fmt: skip


def minute(m: int, lo: float, hi: float, avg: float, last: float, count: int) -> MinuteAggregate:
    return MinuteAggregate("hd-b1-01", "temperature", "celsius", m, lo, hi, avg, last, count)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "gateway.db", clock=ManualClock(T0))
    s.open(asyncio.get_running_loop())
    yield s
    await s.close()


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Hold the database's write lock from another connection: the writer must wait."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def count(path: Path, table: str) -> int:
    with opened(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_pragmas_and_schema_version(store: Store) -> None:
    with opened(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [v for (v,) in conn.execute("SELECT version FROM migrations ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


async def test_events_round_trip(store: Store) -> None:
    await store.submit(
        WriteBatch(
            events=[
                event("hd-b1-01", 1, T0, celsius=58.5),
                event("hd-b1-01", 2, T0 + 1, kind="fire.detector.fault"),
                event("hd-b1-02", 7, T0 + 2),
            ]
        )
    )
    newest = store.events_for()
    assert [(e["source"], e["seq"]) for e in newest] == [
        ("hd-b1-02", 7), ("hd-b1-01", 2), ("hd-b1-01", 1),
    ]  # fmt: skip
    first = newest[2]
    assert first["data"] == {"celsius": 58.5}
    assert first["severity"] == int(Severity.CRITICAL)
    assert first["zone"] == "b1-f1"
    assert first["device_time"] is None
    assert [e["seq"] for e in store.events_for(source="hd-b1-01")] == [2, 1]
    assert [e["seq"] for e in store.events_for(kind="fire.detector.alarm", limit=1)] == [7]
    assert store.events_for(source="hd-b1-01", kind="fire.detector.fault")[0]["seq"] == 2
    assert store.last_seq() == {"hd-b1-01": 2, "hd-b1-02": 7}


async def test_event_written_twice_is_stored_once(store: Store) -> None:
    e = event("hd-b1-01", 1, T0)
    await store.submit(WriteBatch(events=[e]))
    await store.submit(WriteBatch(events=[e]))
    assert count(store.path, "events") == 1


async def test_minute_flushed_twice_is_merged(store: Store) -> None:
    m = int(T0 // 60)
    await store.submit(WriteBatch(minutes=[minute(m, 20.0, 24.0, 22.0, 24.0, 3)]))
    await store.submit(WriteBatch(minutes=[minute(m, 18.0, 21.0, 19.0, 18.0, 1)]))
    with opened(store.path) as conn:
        row = conn.execute("SELECT min, max, avg, last, count, unit FROM readings").fetchone()
    # avg is weighted by count: (22 * 3 + 19 * 1) / 4
    assert row == (18.0, 24.0, 21.25, 18.0, 4, "celsius")


async def test_alert_upserts_by_id(store: Store) -> None:
    await store.submit(WriteBatch(alerts=[alert("A1"), alert("A2", raised_at=T0 + 5)]))
    assert [a.id for a in store.active_alerts()] == ["A1", "A2"]
    assert store.active_alerts()[0] == alert("A1")
    await store.submit(WriteBatch(alerts=[alert("A1", "resolved", cleared_at=T0 + 60)]))
    assert [a.id for a in store.active_alerts()] == ["A2"]
    recent = store.recent_alerts()
    assert [(a.id, a.state) for a in recent] == [("A2", "firing"), ("A1", "resolved")]
    assert recent[1].cleared_at == T0 + 60
    assert store.recent_alerts(limit=1)[0].id == "A2"
    assert count(store.path, "alerts") == 2


async def test_outbox_order_exclude_ack_and_attempts(store: Store) -> None:
    rows = [
        NewOutboxRow("mqtt-city", int(Lane.TELEMETRY), "t/telemetry", b"t1"),
        NewOutboxRow("mqtt-city", int(Lane.ALARM), "t/alarm", b"a1", retain=True),
        NewOutboxRow("mqtt-city", int(Lane.EVENT), "t/event", b"e1"),
        NewOutboxRow("mqtt-city", int(Lane.ALARM), "t/alarm", b"a2"),
        NewOutboxRow("webhook-desk", int(Lane.ALARM), "t/alarm", b"w1"),
    ]
    await store.submit(WriteBatch(outbox=rows))
    fetched = store.outbox_fetch("mqtt-city", 10, exclude=())
    assert [r.payload for r in fetched] == [b"a1", b"a2", b"e1", b"t1"]
    a1 = fetched[0]
    assert (a1.retain, a1.created_at, a1.attempts, a1.topic) == (True, T0, 0, "t/alarm")
    assert [r.payload for r in store.outbox_fetch("mqtt-city", 2, exclude={a1.id})] == [
        b"a2", b"e1",
    ]  # fmt: skip
    assert store.outbox_stats() == {"mqtt-city": (4, T0), "webhook-desk": (1, T0)}

    await store.submit(WriteBatch(outbox_attempted=[a1.id, a1.id]))
    assert store.outbox_fetch("mqtt-city", 1, exclude=())[0].attempts == 2
    await store.submit(WriteBatch(outbox_acked=[r.id for r in fetched[:3]]))
    assert [r.payload for r in store.outbox_fetch("mqtt-city", 10, exclude=())] == [b"t1"]
    assert store.outbox_stats()["mqtt-city"] == (1, T0)


async def test_outbox_exclude_beyond_the_parameter_limit(store: Store) -> None:
    rows = [NewOutboxRow("mqtt-city", int(Lane.EVENT), "t", b"x") for _ in range(40_000)]
    await store.submit(WriteBatch(outbox=rows))
    in_flight = {r.id for r in store.outbox_fetch("mqtt-city", 39_999, exclude=())}
    rest = store.outbox_fetch("mqtt-city", 10, exclude=in_flight)
    assert len(rest) == 1
    assert rest[0].id not in in_flight


async def test_outbox_ids_are_never_reused(store: Store) -> None:
    row = NewOutboxRow("mqtt-city", int(Lane.ALARM), "t", b"x")
    await store.submit(WriteBatch(outbox=[row]))
    [first] = store.outbox_fetch("mqtt-city", 1, exclude=())
    await store.submit(WriteBatch(outbox_acked=[first.id]))
    await store.submit(WriteBatch(outbox=[row]))
    [second] = store.outbox_fetch("mqtt-city", 1, exclude=())
    assert second.id > first.id


async def test_a_dead_letter_leaves_the_outbox_and_is_listed(store: Store) -> None:
    rows = [NewOutboxRow("ops", int(Lane.ALARM), f"t/{n}", b"x") for n in range(3)]
    await store.submit(WriteBatch(outbox=rows))
    first, second, third = store.outbox_fetch("ops", 10, exclude=())
    await store.submit(WriteBatch(outbox_attempted=[second.id]))
    await store.submit(WriteBatch(outbox_dead=[DeadLetter(second.id, 422, "HTTP 422: bad")]))

    assert [r.id for r in store.outbox_fetch("ops", 10, exclude=())] == [first.id, third.id]
    assert store.outbox_stats() == {"ops": (2, T0)}
    [dead] = store.outbox_dead()
    assert (dead.id, dead.target, dead.topic, dead.status, dead.reason) == (
        second.id, "ops", "t/1", 422, "HTTP 422: bad")
    assert (dead.created_at, dead.dead_at, dead.attempts) == (T0, T0, 2)  # the refusal counts
    assert store.outbox_dead_counts() == {"ops": 1}
    assert dead.to_json()["status"] == 422

    # Moving it again (a retried batch) changes nothing.
    await store.submit(WriteBatch(outbox_dead=[DeadLetter(second.id, 422, "again")]))
    assert [d.reason for d in store.outbox_dead()] == ["HTTP 422: bad"]


def test_outbox_statistics_read_the_index_not_the_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    migrate(path, T0)
    with opened(path) as conn:
        conn.executemany(
            "INSERT INTO outbox (target, lane, topic, payload, retain, created_at)"
            " VALUES (?, ?, 't', x'00', 0, ?)",
            [(f"target-{n % 3}", n % 2, T0 + n) for n in range(3000)],
        )
        conn.execute("ANALYZE")
        for sql in (queries._OUTBOX_STATS, queries._DEAD_COUNTS):
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
            assert not [step for step in plan if step.startswith("SCAN outbox")], plan
            assert any("USING COVERING INDEX" in step for step in plan), plan
        assert queries.outbox_stats(conn) == {
            "target-0": (1000, T0), "target-1": (1000, T0 + 1), "target-2": (1000, T0 + 2),
        }  # fmt: skip
        conn.execute("DELETE FROM outbox")
        assert queries.outbox_stats(conn) == {}


async def test_outbox_bound_drops_oldest_state_rows_never_alarms(tmp_path: Path) -> None:
    s = Store(tmp_path / "gateway.db", retention=Retention(outbox_max_rows=10),
              clock=ManualClock(T0))  # fmt: skip
    s.open(asyncio.get_running_loop())
    try:
        def state(n: int) -> NewOutboxRow:
            return NewOutboxRow("desk", int(Lane.EVENT), f"p/state/hd-{n:02d}", b"s", retain=True)

        alarms = [NewOutboxRow("desk", int(Lane.ALARM), "p/alert/hd-01", b"a")] * 6
        minor = [NewOutboxRow("desk", int(Lane.EVENT), "p/alert/hd-02", b"m")] * 2
        await s.submit(WriteBatch(outbox=[state(n) for n in range(1, 7)]))
        await s.submit(WriteBatch(outbox=alarms + minor + [state(7), state(8)]))
        deleted = await s.run_retention(T0)
        assert deleted["outbox_states_for_bound"] == 6
        left = s.outbox_fetch("desk", 100, exclude=())
        assert len(left) == 10
        assert [r.topic for r in left if r.retain] == ["p/state/hd-07", "p/state/hd-08"]
        assert sum(r.lane == int(Lane.ALARM) for r in left) == 6

        # Over the bound with alarms only: nothing more can go, and nothing does.
        await s.submit(WriteBatch(outbox=alarms))
        deleted = await s.run_retention(T0)
        assert deleted["outbox_states_for_bound"] == 2
        assert s.outbox_stats()["desk"][0] == 14
        assert all(r.lane != int(Lane.EVENT) or not r.retain
                   for r in s.outbox_fetch("desk", 100, exclude=()))
    finally:
        await s.close()


async def test_dead_letters_are_kept_as_long_as_events(tmp_path: Path) -> None:
    now = T0 + 100 * DAY
    clock = ManualClock(T0)
    s = Store(tmp_path / "gateway.db", retention=Retention(events_days=90), clock=clock)
    s.open(asyncio.get_running_loop())
    try:
        await s.submit(WriteBatch(outbox=[NewOutboxRow("ops", 0, "t", b"x")] * 2))
        old, new = s.outbox_fetch("ops", 2, exclude=())
        await s.submit(WriteBatch(outbox_dead=[DeadLetter(old.id, 400, "HTTP 400")]))
        clock.advance(20 * DAY)
        await s.submit(WriteBatch(outbox_dead=[DeadLetter(new.id, 400, "HTTP 400")]))
        deleted = await s.run_retention(now)
        assert deleted["outbox_dead"] == 1
        assert [d.id for d in s.outbox_dead()] == [new.id]
    finally:
        await s.close()


async def test_device_state_and_audit(store: Store) -> None:
    await store.submit(
        WriteBatch(
            device_states=[
                DeviceStateRow("hd-b1-02", "up", T0, "", T0),
                DeviceStateRow("hd-b1-01", "up", T0, "", T0),
            ],
            audit=[AuditRow(T0, "desk-1", "barrier.open", "gate-east", {"why": "fire drill"})],
        )
    )
    await store.submit(
        WriteBatch(device_states=[DeviceStateRow("hd-b1-01", "stale", T0 + 90, "silent 90 s", T0)])
    )
    assert store.device_states() == [
        DeviceStateRow("hd-b1-01", "stale", T0 + 90, "silent 90 s", T0),
        DeviceStateRow("hd-b1-02", "up", T0, "", T0),
    ]
    with opened(store.path) as conn:
        audit = conn.execute("SELECT time, actor, action, target, detail FROM audit").fetchall()
    assert audit == [(T0, "desk-1", "barrier.open", "gate-east", '{"why":"fire drill"}')]


async def test_many_batches_coalesce_and_resolve_only_after_commit(store: Store) -> None:
    with write_lock(store.path):
        futures = [
            store.submit(WriteBatch(events=[event("hd-b1-01", i, T0 + i)])) for i in range(1, 501)
        ]
        await asyncio.sleep(0.3)  # the writer is stuck on the lock: nothing may resolve
        assert not any(f.done() for f in futures)
        assert store.commits == 0
        assert store.writer_queue_depth > 0
    await asyncio.gather(*futures)
    # The writer took one batch before it met the lock, then all the rest at once.
    assert 1 <= store.commits <= 2
    assert store.writer_queue_depth == 0
    assert store.last_commit_s > 0
    assert count(store.path, "events") == 500
    assert store.last_seq() == {"hd-b1-01": 500}


async def test_a_commit_held_up_by_the_disk_is_logged(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.store.writer as writer

    monkeypatch.setattr(writer, "SLOW_COMMIT_S", 0.2)
    with write_lock(store.path):
        held = store.submit(WriteBatch(events=[event("hd-b1-01", 1, T0)]))
        await asyncio.sleep(0.4)  # the commit waits on the lock at least this long
    await held
    slow = [r.getMessage() for r in caplog.records if "slow_commit" in r.getMessage()]
    assert len(slow) == 1 and "batches=1" in slow[0]


async def test_a_failed_batch_fails_every_later_one_until_reset(store: Store) -> None:
    """Later batches were built on state that assumed the failed one (a clear after its
    alarm): committing them would put the store out of the order the device spoke in."""
    looped: dict[str, Any] = {}
    looped["self"] = looped  # cannot be encoded as JSON
    with write_lock(store.path):
        good1 = store.submit(WriteBatch(events=[event("hd-b1-01", 1, T0)]))
        bad = store.submit(WriteBatch(events=[event("hd-b1-01", 2, T0, loop=looped)]))
        later = store.submit(WriteBatch(alerts=[alert("A1")]))
    await good1
    with pytest.raises(StoreFailed, match="Circular"):
        await bad
    with pytest.raises(StoreFailed, match="earlier commit failed"):
        await later
    await asyncio.sleep(0)  # the store's own done-callbacks run after an awaited future
    assert store.broken and not store.healthy
    assert store.failed_batches == 2
    assert store.write_failures == 2
    assert store.last_seq() == {"hd-b1-01": 1}
    assert store.active_alerts() == []
    with pytest.raises(StoreFailed):
        await store.submit(WriteBatch(events=[event("hd-b1-01", 3, T0)]))
    # The core rebuilt its state from the store: the writer takes batches again.
    await store.reset()
    await store.submit(WriteBatch(events=[event("hd-b1-01", 3, T0)]))
    assert store.last_seq() == {"hd-b1-01": 3}
    assert store.healthy and not store.broken


async def test_an_injected_disk_full_fails_the_commit_and_rolls_back(store: Store) -> None:
    def disk_full() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    store.inject_fault(disk_full)
    with pytest.raises(StoreFailed, match="disk is full"):
        await store.submit(WriteBatch(events=[event("hd-b1-01", 1, T0)], alerts=[alert("A1")]))
    store.inject_fault(None)
    await store.reset()
    assert store.last_seq() == {} and store.active_alerts() == []
    await store.submit(WriteBatch(events=[event("hd-b1-01", 1, T0)]))
    assert store.last_seq() == {"hd-b1-01": 1}


async def test_close_commits_everything_queued(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    s = Store(path, clock=ManualClock(T0))
    s.open(asyncio.get_running_loop())
    futures = [s.submit(WriteBatch(events=[event("hd-b1-01", i, T0)])) for i in range(1, 201)]
    await s.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert count(path, "events") == 200
    # A clean close checkpoints the WAL into the main file.
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with pytest.raises(StoreError):
        s.submit(WriteBatch())
    await s.close()  # a second close is harmless


async def test_retention_by_age(tmp_path: Path) -> None:
    now = T0 + 1000 * DAY
    s = Store(tmp_path / "gateway.db", retention=Retention(events_days=90, readings_days=400,
              alerts_days=730), clock=ManualClock(now))  # fmt: skip
    s.open(asyncio.get_running_loop())
    try:
        await s.submit(
            WriteBatch(
                events=[event("hd-b1-01", 1, now - 91 * DAY), event("hd-b1-01", 2, now - 89 * DAY)],
                minutes=[
                    minute(int((now - 401 * DAY) // 60), 1, 1, 1, 1, 1),
                    minute(int((now - 399 * DAY) // 60), 2, 2, 2, 2, 1),
                ],
                alerts=[
                    alert("old-resolved", "resolved", now - 800 * DAY, now - 731 * DAY),
                    alert("new-resolved", "resolved", now - 800 * DAY, now - 729 * DAY),
                    alert("old-firing", "firing", now - 900 * DAY),
                ],
                outbox=[NewOutboxRow("mqtt-city", int(Lane.ALARM), "t", b"x")],
                availability=[
                    AvailabilityMinute("lift", "lift-1", int((now - 401 * DAY) // 60), 60, 0, 0),
                    AvailabilityMinute("lift", "lift-1", int((now - 399 * DAY) // 60), 0, 60, 0),
                ],
            )
        )
        deleted = await s.run_retention(now)
        assert deleted == {
            "events": 1, "readings": 1, "alerts": 1, "outbox_dead": 0, "consumption_hours": 0,
            "availability_minutes": 1,
            "readings_for_size": 0, "events_for_size": 0, "outbox_states_for_bound": 0,
        }  # fmt: skip
        assert [e["seq"] for e in s.events_for()] == [2]
        assert sorted(a.id for a in s.recent_alerts()) == ["new-resolved", "old-firing"]
        assert s.outbox_stats()["mqtt-city"][0] == 1
        with opened(s.path) as conn:
            assert conn.execute("SELECT avg FROM readings").fetchall() == [(2.0,)]
            assert conn.execute("SELECT unavailable_s FROM availability_minutes").fetchall() == [
                (60.0,)]
        assert await s.run_retention(now) == dict.fromkeys(deleted, 0)
    finally:
        await s.close()


async def test_retention_by_size_cuts_oldest_readings_then_events(tmp_path: Path) -> None:
    s = Store(tmp_path / "gateway.db", retention=Retention(max_db_mb=1), clock=ManualClock(T0))
    s.open(asyncio.get_running_loop())
    try:
        padding = "x" * 400
        await s.submit(
            WriteBatch(
                events=[event("hd-b1-01", i, T0 + i, pad=padding) for i in range(1, 4001)],
                minutes=[minute(int(T0 // 60) + i, 1, 1, 1, 1, 1) for i in range(20_000)],
                alerts=[alert("firing")],
                outbox=[NewOutboxRow("mqtt-city", int(Lane.ALARM), "t", b"y" * 400)] * 200,
            )
        )
        deleted = await s.run_retention(T0 + 4001)
        assert deleted["readings_for_size"] == 20_000  # telemetry goes first, all of it
        assert 1000 <= deleted["events_for_size"] < 4000
        with opened(s.path) as conn:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            used = conn.execute("PRAGMA page_count").fetchone()[0]
            used -= conn.execute("PRAGMA freelist_count").fetchone()[0]
            assert used * page <= 1024 * 1024
            seqs = [seq for (seq,) in conn.execute("SELECT seq FROM events ORDER BY seq")]
        # The newest events survive, contiguous up to the last one.
        assert seqs == list(range(4001 - len(seqs), 4001))
        assert len(seqs) == 4000 - deleted["events_for_size"]
        assert s.outbox_stats()["mqtt-city"][0] == 200
        assert [a.id for a in s.active_alerts()] == ["firing"]
    finally:
        await s.close()


async def test_v1_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    assert migrate(path, T0, upto=1) == [1]
    with opened(path) as conn:
        conn.execute(
            "INSERT INTO events VALUES ('E1', ?, 'hd-b1-01', 41, 'fire.detector.alarm', 'b1-f1',"
            " 3, NULL, '{\"celsius\":60.0}')",
            [T0],
        )
        conn.execute(
            "INSERT INTO outbox (target, lane, topic, payload, retain, created_at)"
            " VALUES ('mqtt-city', 0, 't', x'01', 0, ?)",
            [T0],
        )
        conn.execute(
            "INSERT INTO readings VALUES ('hd-b1-01', 'temperature', 1, 1, 2, 1.5, 2, 2, 'celsius')"
        )

    s = Store(path, clock=ManualClock(T0))
    s.open(asyncio.get_running_loop())
    try:
        with opened(path) as conn:
            versions = [v for (v,) in conn.execute("SELECT version FROM migrations")]
            indexes = {
                name
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
            }
            readings = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        assert {"idx_readings_minute", "idx_alerts_raised_at", "idx_outbox_target_created_at",
                "idx_outbox_states", "idx_outbox_dead_target"} <= indexes
        assert s.last_seq() == {"hd-b1-01": 41}
        assert s.events_for()[0]["data"] == {"celsius": 60.0}
        assert s.outbox_fetch("mqtt-city", 10, exclude=())[0].payload == b"\x01"
        assert readings == 1
        await s.submit(WriteBatch(events=[event("hd-b1-01", 42, T0 + 1)]))
        assert s.last_seq() == {"hd-b1-01": 42}
    finally:
        await s.close()


async def test_database_from_a_newer_gateway_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    migrate(path, T0)
    with opened(path) as conn:
        conn.execute("INSERT INTO migrations VALUES (?, ?)", [SCHEMA_VERSION + 1, T0])
    s = Store(path)
    with pytest.raises(StoreError, match="schema version"):
        s.open(asyncio.get_running_loop())


CRASH_CHILD = "import sys; from tests.test_store import crash_child; crash_child(sys.argv[1])"


def crash_child(path: str) -> None:
    """Runs in a subprocess: write forever, print how many batches are committed."""

    async def main() -> None:
        store = Store(Path(path))
        store.open(asyncio.get_running_loop())
        committed = 0
        while True:
            futures = []
            for _ in range(10):
                committed += 1
                seq = committed * 10
                futures.append(
                    store.submit(
                        WriteBatch(
                            events=[event("hd-b1-01", seq + i, T0 + seq, pad="x" * 200)
                                    for i in range(10)],
                            minutes=[minute(committed, 1, 2, 1.5, 2, 2)],
                            outbox=[NewOutboxRow("mqtt-city", 0, "t", b"x" * 200)],
                        )
                    )
                )  # fmt: skip
            await asyncio.gather(*futures)
            print(committed, flush=True)

    asyncio.run(main())


@pytest.mark.parametrize("kill_after_lines", [1, 7, 40])
def test_kill_9_leaves_a_consistent_database(tmp_path: Path, kill_after_lines: int) -> None:
    path = tmp_path / "gateway.db"
    argv = [sys.executable, "-c", CRASH_CHILD, str(path)]
    # The argv is ours: this interpreter, a fixed snippet and a tmp_path.
    with subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        acknowledged = 0
        try:
            for _ in range(kill_after_lines):
                acknowledged = int(child.stdout.readline())
        finally:
            os.kill(child.pid, signal.SIGKILL)
        # Lines printed before the kill landed are acknowledged commits too.
        rest = child.stdout.read().split()
    if rest:
        acknowledged = int(rest[-1])
    assert child.returncode == -signal.SIGKILL

    with opened(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        batches = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        minutes = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    # Every batch the child saw committed survived, and no batch survived in part.
    assert batches >= acknowledged
    assert events == batches * 10
    assert minutes == batches
