"""The store's single writer: a thread that owns the only writing connection.

The loop hands it batches through a queue; it takes everything queued, writes it in
one transaction, commits (fsync) and only then resolves the batches' futures, so the
event loop never waits on the disk and a resolved future means the rows are durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gateway import trace
from gateway.errors import StoreFailed
from gateway.events import Event
from gateway.lift_availability import AvailabilityMinute
from gateway.store.downsample import MinuteAggregate
from gateway.store.schema import AlertRecord, AuditRow, DeadLetter, DeviceStateRow, NewOutboxRow

# A commit this slow is logged (each one): the disk, not the gateway, held the alarms.
SLOW_COMMIT_S = 0.5

log = logging.getLogger("gateway.store")

DAY = 86_400.0
# Rows per retention transaction: small enough that queued alarms commit between two
# chunks within milliseconds. A cut for size re-measures after each chunk, so its
# chunk is smaller: it overshoots the bound by at most one chunk.
AGE_CHUNK = 5_000
SIZE_CHUNK = 1_000


@dataclass(frozen=True)
class Retention:
    events_days: float = 90
    readings_days: float = 400
    alerts_days: float = 730  # resolved alerts only; firing ones are never deleted
    max_db_mb: float = 4096
    # Outbox rows kept at most: past it, state rows go oldest first (alarms never do).
    outbox_max_rows: int = 1_000_000
    # The meters' hourly totals (savings evidence): a baseline year and the years after.
    consumption_days: float = 3650
    # Plate reads and other gate events are personal data: kept shorter where the site says.
    gate_events_days: float | None = None


@dataclass(slots=True)
class WriteBatch:
    """Everything one stage wants committed together. The store owns it once submitted."""

    events: list[Event] = field(default_factory=list)
    minutes: list[MinuteAggregate] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)  # upsert by id
    outbox: list[NewOutboxRow] = field(default_factory=list)
    device_states: list[DeviceStateRow] = field(default_factory=list)
    audit: list[AuditRow] = field(default_factory=list)
    outbox_acked: list[int] = field(default_factory=list)  # PUBACK / 2xx received: delete
    outbox_attempted: list[int] = field(default_factory=list)  # attempts += 1
    outbox_dead: list[DeadLetter] = field(default_factory=list)  # refused for good: move
    availability: list[AvailabilityMinute] = field(default_factory=list)  # lifts, buildings


_INSERT_EVENT = (
    # OR IGNORE: an event id is unique for life, so writing it again is a no-op.
    "INSERT OR IGNORE INTO events"
    " (id, time, source, seq, kind, zone, severity, device_time, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_MINUTE = (
    "INSERT INTO readings (source, metric, minute, min, max, avg, last, count, unit)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (source, metric, minute) DO UPDATE SET"
    " min = min(readings.min, excluded.min),"
    " max = max(readings.max, excluded.max),"
    " avg = (readings.avg * readings.count + excluded.avg * excluded.count)"
    "       / (readings.count + excluded.count),"
    " last = excluded.last,"
    " count = readings.count + excluded.count,"
    " unit = excluded.unit"
)
# A meter's continuous total, hourly: the newest minute of the hour wins.
_UPSERT_HOUR = (
    "INSERT INTO consumption_hours (source, metric, hour, minute, last) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (source, metric, hour) DO UPDATE SET"
    " minute = excluded.minute, last = excluded.last"
    " WHERE excluded.minute >= consumption_hours.minute"
)
CONSUMED_SUFFIX = "_consumed"
# A minute flushed twice (a shutdown, then the same minute after a quick restart) adds up.
_UPSERT_AVAILABILITY = (
    "INSERT INTO availability_minutes"
    " (scope, id, minute, available_s, unavailable_s, unknown_s) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (scope, id, minute) DO UPDATE SET"
    " available_s = availability_minutes.available_s + excluded.available_s,"
    " unavailable_s = availability_minutes.unavailable_s + excluded.unavailable_s,"
    " unknown_s = availability_minutes.unknown_s + excluded.unknown_s"
)
_UPSERT_ALERT = (
    "INSERT INTO alerts"
    " (id, key, rule, source, zone, severity, state, raised_at, cleared_at, summary, data, drill)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET"
    " key = excluded.key, rule = excluded.rule, source = excluded.source,"
    " zone = excluded.zone, severity = excluded.severity, state = excluded.state,"
    " raised_at = excluded.raised_at, cleared_at = excluded.cleared_at,"
    " summary = excluded.summary, data = excluded.data, drill = excluded.drill"
)
_UPSERT_DEVICE_STATE = (
    "INSERT INTO device_state (source, state, since, detail, last_seen) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (source) DO UPDATE SET state = excluded.state, since = excluded.since,"
    " detail = excluded.detail, last_seen = excluded.last_seen"
)
_INSERT_AUDIT = "INSERT INTO audit (time, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)"
_INSERT_OUTBOX = (
    "INSERT INTO outbox (target, lane, topic, payload, retain, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_OUTBOX_ATTEMPTED = "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?"
_OUTBOX_ACKED = "DELETE FROM outbox WHERE id = ?"
# The refused attempt itself counts, hence attempts + 1; the row is then deleted from
# `outbox` like an acknowledged one. OR IGNORE: a retried batch moves nothing twice.
_OUTBOX_DEAD = (
    "INSERT OR IGNORE INTO outbox_dead"
    " (id, target, lane, topic, payload, retain, created_at, attempts, dead_at, status, reason)"
    " SELECT id, target, lane, topic, payload, retain, created_at, attempts + 1, ?, ?, ?"
    " FROM outbox WHERE id = ?"
)
# A state row: a retained `.../state/<device>` message off the alarm lane. Each one is
# superseded by the device's next state, so it is what the outbox bound may drop.
_STATE_ROW = "retain = 1 AND lane != 0 AND topic GLOB '*/state/*'"


def _json(value: dict[str, Any]) -> str:
    # default=str: a driver's odd value (a Decimal, a datetime) must not lose an alarm.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(slots=True)
class _Submitted:
    batch: WriteBatch
    future: asyncio.Future[None]
    now: float  # created_at of the batch's new outbox rows
    # Called on the loop right after the future is settled, in the same turn: the
    # future's own done-callbacks run a turn later (a turn under load: milliseconds).
    then: Callable[[], None] | None = None


@dataclass(slots=True)
class _RetentionRun:
    now: float
    future: asyncio.Future[dict[str, int]]


@dataclass(slots=True)
class _Stop:
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Reset:
    future: asyncio.Future[None]


_Item = _Submitted | _RetentionRun | _Stop | _Reset
_T = TypeVar("_T")


def _settle(
    futures: list[asyncio.Future[_T]], result: _T | None, error: BaseException | None
) -> None:
    # Runs on the loop thread; a caller may have cancelled its future meanwhile.
    for future in futures:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]


def _settled_batches(batches: list[_Submitted], error: BaseException | None) -> None:
    _settle([b.future for b in batches], None, error)
    for b in batches:
        if b.then is not None:
            b.then()


class Writer:
    """The writer thread. The loop thread calls only submit, retain, stop and reads counters."""

    def __init__(
        self, conn: sqlite3.Connection, loop: asyncio.AbstractEventLoop, retention: Retention
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._retention = retention
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._backlog: deque[_Item] = deque()  # taken from the queue, not yet handled
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._failing = False
        # Set by a failed commit: every batch after it fails too, until the core has
        # rebuilt its state from the store and calls reset(). A later batch was built on
        # state that assumed the failed one (an alarm's clear after the alarm itself):
        # committing it would put the store out of the order the devices spoke in.
        self._broken: BaseException | None = None
        # A seam for tests: called inside each write, it may raise as a full disk would.
        self.fault_hook: Callable[[], None] | None = None
        self.commits = 0
        self.last_commit_s = 0.0
        self.failed_batches = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: WriteBatch, future: asyncio.Future[None], now: float,
               then: Callable[[], None] | None = None) -> None:
        self._queue.put(_Submitted(batch, future, now, then))

    def retain(self, now: float, future: asyncio.Future[dict[str, int]]) -> None:
        self._queue.put(_RetentionRun(now, future))

    def reset(self, future: asyncio.Future[None]) -> None:
        """Accept batches again (after the core restarted from the store)."""
        self._queue.put(_Reset(future))

    @property
    def broken(self) -> bool:
        return self._broken is not None

    def stop(self, future: asyncio.Future[None]) -> None:
        """Everything queued before this is committed first; then the connection closes."""
        self._queue.put(_Stop(future))

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() + len(self._backlog)

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:
            # Only a bug gets here; say so loudly, the futures still queued never resolve.
            log.critical("store writer thread died", exc_info=True)
            raise

    def _serve(self) -> None:
        while True:
            if not self._backlog:
                self._backlog.append(self._queue.get())
            self._take_queued()
            if self._commit_leading_batches():
                continue
            item = self._backlog.popleft()
            if isinstance(item, _Stop):
                self._stop(item)
                return
            if isinstance(item, _RetentionRun):
                self._retain(item)
            elif isinstance(item, _Reset):
                self._broken = None
                self._resolve([item.future], None, None)

    def _take_queued(self) -> None:
        while True:
            try:
                self._backlog.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _commit_leading_batches(self) -> bool:
        batches: list[_Submitted] = []
        while self._backlog and isinstance(self._backlog[0], _Submitted):
            batches.append(self._backlog.popleft())  # type: ignore[arg-type]
        if batches:
            self._commit(batches)
        return bool(batches)

    def _commit(self, batches: list[_Submitted]) -> None:
        if self._broken is not None:
            self.failed_batches += len(batches)
            refused = StoreFailed(f"an earlier commit failed ({self._broken!r})")
            self._settle_batches(batches, refused)
            return
        started = time.perf_counter()
        try:
            self._write(batches)
        except Exception as exc:
            if len(batches) > 1:
                # Find the culprit: the batches before it still commit, in order.
                for one in batches:
                    self._commit([one])
                return
            self.failed_batches += 1
            self._broken = exc
            if not self._failing:
                self._failing = True
                log.error("store write failed error=%r", exc)
            self._settle_batches(batches, StoreFailed(f"commit failed: {exc!r}"))
            return
        self.commits += 1
        ended = time.perf_counter()
        self.last_commit_s = ended - started
        if trace.ON:
            for b in batches:
                trace.commit(id(b.future), started, ended)
        if self.last_commit_s >= SLOW_COMMIT_S:
            # Every alarm behind it waited as long: a disk that stalls is worth a line.
            log.warning("event=slow_commit seconds=%.3f batches=%d", self.last_commit_s,
                        len(batches))
        if self._failing:
            self._failing = False
            log.info("store writes recovered failed_batches=%d", self.failed_batches)
        self._settle_batches(batches, None)

    def _settle_batches(self, batches: list[_Submitted], error: BaseException | None) -> None:
        # RuntimeError: the loop is closed, nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settled_batches, batches, error)

    def _write(self, batches: list[_Submitted]) -> None:
        # Rows are built before BEGIN so an unencodable value fails without a transaction.
        events = [
            (e.id, e.time, e.source, e.seq, e.kind, e.zone, int(e.severity), e.device_time,
             _json(e.data))
            for b in batches for e in b.batch.events
        ]  # fmt: skip
        minutes = [
            (m.source, m.metric, m.minute, m.min, m.max, m.avg, m.last, m.count, m.unit)
            for b in batches for m in b.batch.minutes
        ]  # fmt: skip
        hours = [
            (m.source, m.metric, m.minute // 60, m.minute, m.last)
            for b in batches for m in b.batch.minutes if m.metric.endswith(CONSUMED_SUFFIX)
        ]  # fmt: skip
        alerts = [
            (a.id, a.key, a.rule, a.source, a.zone, int(a.severity), a.state, a.raised_at,
             a.cleared_at, a.summary, _json(a.data), int(a.drill))
            for b in batches for a in b.batch.alerts
        ]  # fmt: skip
        device_states = [
            (d.source, d.state, d.since, d.detail, d.last_seen)
            for b in batches for d in b.batch.device_states
        ]  # fmt: skip
        audit = [
            (a.time, a.actor, a.action, a.target, _json(a.detail))
            for b in batches for a in b.batch.audit
        ]  # fmt: skip
        outbox = [
            (o.target, int(o.lane), o.topic, bytes(o.payload), int(o.retain), b.now)
            for b in batches for o in b.batch.outbox
        ]  # fmt: skip
        availability = [
            (a.scope, a.id, a.minute, a.available_s, a.unavailable_s, a.unknown_s)
            for b in batches for a in b.batch.availability
        ]  # fmt: skip
        attempted = [(i,) for b in batches for i in b.batch.outbox_attempted]
        dead = [(b.now, d.status, d.reason, d.id) for b in batches for d in b.batch.outbox_dead]
        acked = [(i,) for b in batches for i in b.batch.outbox_acked]
        acked += [(d.id,) for b in batches for d in b.batch.outbox_dead]
        # Inserts before the updates and deletes: a batch may ack a row queued earlier
        # in the same transaction.
        steps = (
            (_INSERT_EVENT, events),
            (_UPSERT_MINUTE, minutes),
            (_UPSERT_HOUR, hours),
            (_UPSERT_AVAILABILITY, availability),
            (_UPSERT_ALERT, alerts),
            (_UPSERT_DEVICE_STATE, device_states),
            (_INSERT_AUDIT, audit),
            (_INSERT_OUTBOX, outbox),
            (_OUTBOX_ATTEMPTED, attempted),
            (_OUTBOX_DEAD, dead),
            (_OUTBOX_ACKED, acked),
        )
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.fault_hook is not None:
                self.fault_hook()
            for sql, rows in steps:
                if rows:
                    conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _resolve(
        self, futures: list[asyncio.Future[_T]], result: _T | None, error: BaseException | None
    ) -> None:
        # RuntimeError: the loop is closed, nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_settle, futures, result, error)

    def _retain(self, run: _RetentionRun) -> None:
        try:
            counts = self._apply_retention(run.now)
        except Exception as exc:
            log.error("store retention failed error=%r", exc)
            self._resolve([run.future], None, exc)
            return
        if counts["readings_for_size"] or counts["events_for_size"]:
            log.warning(
                "store over its size bound, oldest rows deleted max_db_mb=%s %s",
                self._retention.max_db_mb,
                " ".join(f"{k}={v}" for k, v in counts.items()),
            )
        if counts["outbox_states_for_bound"]:
            log.warning(
                "outbox over its row bound, oldest state rows dropped outbox_max_rows=%d"
                " dropped=%d",
                self._retention.outbox_max_rows,
                counts["outbox_states_for_bound"],
            )
        self._resolve([run.future], counts, None)

    def _apply_retention(self, now: float) -> dict[str, int]:
        r = self._retention
        counts = {
            "events": self._delete("events", "time < ?", [now - r.events_days * DAY]),
            "readings": self._delete(
                "readings", "minute < ?", [int((now - r.readings_days * DAY) // 60)]
            ),
            "alerts": self._delete(
                "alerts",
                "state = 'resolved' AND coalesce(cleared_at, raised_at) < ?",
                [now - r.alerts_days * DAY],
            ),
            # Dead letters are a record of what a target refused: kept as long as events.
            "outbox_dead": self._delete("outbox_dead", "dead_at < ?", [now - r.events_days * DAY]),
            "availability_minutes": self._delete(
                "availability_minutes", "minute < ?", [int((now - r.readings_days * DAY) // 60)]
            ),
            "consumption_hours": self._delete(
                "consumption_hours", "hour < ?", [int((now - r.consumption_days * DAY) // 3600)]
            ),
        }
        if r.gate_events_days is not None:
            counts["gate_events"] = self._delete(
                "events", "kind LIKE 'gate.%' AND time < ?", [now - r.gate_events_days * DAY])
        limit = int(r.max_db_mb * 1024 * 1024)
        # Telemetry goes first: it is the bulk and the least valuable. Outbox rows and
        # alerts are never cut for size; that bound has its own alert before it bites.
        counts["readings_for_size"] = self._shrink("readings", "minute", limit)
        counts["events_for_size"] = self._shrink("events", "time", limit)
        counts["outbox_states_for_bound"] = self._bound_outbox(r.outbox_max_rows)
        return counts

    def _bound_outbox(self, max_rows: int) -> int:
        """Drop the oldest state rows while the outbox holds more than `max_rows`.

        Only state rows go: a receiver learns a device's state from its next retained
        message anyway, while an alert change dropped is an alert never heard. Alarm and
        event rows are never dropped, so the bound is soft: an outbox of alerts only stays
        over it (the metric and its alert say so long before).
        """
        total = 0
        over = self._outbox_rows() - max_rows
        while over > 0:
            n = self._delete_chunk(
                "DELETE FROM outbox WHERE id IN"
                f" (SELECT id FROM outbox WHERE {_STATE_ROW} ORDER BY id LIMIT ?)",
                [min(over, AGE_CHUNK)],
            )
            if n == 0:
                break
            total += n
            # Rows committed between chunks count too: measure again rather than subtract.
            over = self._outbox_rows() - max_rows
        return total

    def _outbox_rows(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _delete(self, table: str, where: str, params: list[Any]) -> int:
        total = 0
        while True:
            n = self._delete_chunk(
                f"DELETE FROM {table} WHERE rowid IN"
                f" (SELECT rowid FROM {table} WHERE {where} LIMIT ?)",
                [*params, AGE_CHUNK],
            )
            total += n
            if n < AGE_CHUNK:
                return total

    def _shrink(self, table: str, oldest_by: str, limit: int) -> int:
        total = 0
        while self.used_bytes() > limit:
            n = self._delete_chunk(
                f"DELETE FROM {table} WHERE rowid IN"
                f" (SELECT rowid FROM {table} ORDER BY {oldest_by} LIMIT ?)",
                [SIZE_CHUNK],
            )
            if n == 0:
                break
            total += n
        return total

    def _delete_chunk(self, sql: str, params: list[Any]) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(sql, params).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        # Batches that arrived meanwhile (an alarm) go in before the next chunk.
        self._take_queued()
        self._commit_leading_batches()
        return n

    def used_bytes(self) -> int:
        """Bytes in use; freed pages stay in the file and are reused, so it never shrinks."""
        page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def _stop(self, stop: _Stop) -> None:
        try:
            # A clean shutdown leaves one self-contained file (no -wal to carry along).
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            # Nothing is lost: the WAL stays beside the file and is replayed at the next
            # open. Said once, not raised: a shutdown on a full disk is still a shutdown.
            log.error("store checkpoint at close failed; the WAL is kept error=%r", exc)
        finally:
            self._conn.close()
        self._resolve([stop.future], None, None)
