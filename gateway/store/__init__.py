"""The local SQLite store: one writer thread for every write, a read-only connection
for the loop's small queries. Tables and the outbox's meaning: docs/store.md."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from gateway.clock import Clock, SystemClock
from gateway.store import queries
from gateway.store.checkpoint import Checkpointer
from gateway.store.downsample import Downsampler, MinuteAggregate
from gateway.store.schema import (
    SCHEMA_VERSION,
    AlertRecord,
    AuditRow,
    DeadLetter,
    DeadOutboxRow,
    DeviceStateRow,
    NewOutboxRow,
    OutboxRow,
    StoreError,
    connect_reader,
    connect_writer,
    migrate,
)
from gateway.store.writer import Retention, WriteBatch, Writer

__all__ = [
    "SCHEMA_VERSION",
    "AlertRecord",
    "AuditRow",
    "DeadLetter",
    "DeadOutboxRow",
    "DeviceStateRow",
    "Downsampler",
    "MinuteAggregate",
    "NewOutboxRow",
    "OutboxRow",
    "Retention",
    "Store",
    "StoreError",
    "WriteBatch",
]

log = logging.getLogger("gateway.store")


class Store:
    def __init__(
        self, path: Path, *, retention: Retention | None = None, clock: Clock | None = None
    ) -> None:
        self.path = path
        self.retention = retention or Retention()
        self._clock: Clock = clock or SystemClock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: Writer | None = None
        self._checkpointer: Checkpointer | None = None
        self._reader: sqlite3.Connection | None = None
        self._closing = False
        # Submitted, not yet resolved, oldest first: back-pressure and its age metric.
        self._uncommitted: dict[asyncio.Future[None], float] = {}
        self.write_failures = 0
        self.healthy = True

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Migrate the file to the current schema and start the writer thread."""
        if self._writer is not None:
            raise StoreError("store is already open")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        applied = migrate(self.path, self._clock.now())
        if applied:
            log.info("store migrated path=%s versions=%s", self.path, applied)
        conn = connect_writer(self.path)
        # The checkpointer thread copies the WAL back, so no commit waits for it.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self._writer = Writer(conn, loop, self.retention)
        self._checkpointer = Checkpointer(self.path)
        self._reader = connect_reader(self.path)
        self._loop = loop
        self._writer.start()
        self._checkpointer.start()

    def submit(
        self, batch: WriteBatch, then: Callable[[], None] | None = None
    ) -> asyncio.Future[None]:
        """Queue `batch` (from the loop thread; never blocks). The future resolves once
        the batch is committed to disk, or fails with `StoreFailed`. `then`, if given,
        is called on the loop as soon as it has (a turn of the loop before the future's
        done-callbacks); it is not called when the writer never answers."""
        writer, loop = self._live()
        future: asyncio.Future[None] = loop.create_future()
        now = self._clock.now()
        writer.submit(batch, future, now, then)
        self._uncommitted[future] = self._clock.monotonic()
        future.add_done_callback(self._settled)
        return future

    def _settled(self, future: asyncio.Future[None]) -> None:
        self._uncommitted.pop(future, None)
        if future.cancelled() or future.exception() is not None:
            self.write_failures += 1
            self.healthy = False
        else:
            self.healthy = True

    async def wait_for_room(self, limit: int) -> None:
        """Back-pressure: wait while more than `limit` batches wait for the writer."""
        while len(self._uncommitted) > limit:
            oldest = next(iter(self._uncommitted))
            await asyncio.wait([oldest])

    def oldest_uncommitted_s(self) -> float:
        if not self._uncommitted:
            return 0.0
        return max(0.0, self._clock.monotonic() - next(iter(self._uncommitted.values())))

    def disk_free_bytes(self) -> int:
        return shutil.disk_usage(self.path.parent).free

    async def reset(self) -> None:
        """After a failed commit: accept batches again (the caller rebuilt its state)."""
        writer, loop = self._live()
        future: asyncio.Future[None] = loop.create_future()
        writer.reset(future)
        await future

    @property
    def broken(self) -> bool:
        """A commit failed and the writer refuses batches until reset()."""
        return self._writer is not None and self._writer.broken

    def inject_fault(self, hook: Callable[[], None] | None) -> None:
        """Tests only: `hook` runs inside every write and may raise as a full disk does."""
        writer, _ = self._live()
        writer.fault_hook = hook

    async def run_retention(self, now: float) -> dict[str, int]:
        """Delete by age, then by size; runs in the writer thread between batches."""
        writer, loop = self._live()
        future: asyncio.Future[dict[str, int]] = loop.create_future()
        writer.retain(now, future)
        return await future

    # The caller passes its own share of the shutdown budget: an explicit timeout
    # here reads better at the call site than an asyncio.timeout block around it.
    async def close(self, timeout: float = 4.0) -> None:  # noqa: ASYNC109
        """Commit everything queued, stop the writer thread, close both connections."""
        if self._writer is None or self._loop is None or self._closing:
            return
        self._closing = True
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.stop)
        stopped: asyncio.Future[None] = self._loop.create_future()
        self._writer.stop(stopped)
        try:
            await asyncio.wait_for(stopped, timeout)
        except TimeoutError:
            log.error(
                "store close timed out timeout_s=%s queued=%d", timeout, self.writer_queue_depth
            )
            raise
        finally:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _live(self) -> tuple[Writer, asyncio.AbstractEventLoop]:
        if self._writer is None or self._loop is None:
            raise StoreError("store is not open")
        if self._closing:
            raise StoreError("store is closed")
        return self._writer, self._loop

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise StoreError("store is not open")
        return self._reader

    # Read side: small queries on the loop thread.

    def outbox_fetch(self, target: str, limit: int, exclude: Collection[int]) -> list[OutboxRow]:
        return queries.outbox_fetch(self._read(), target, limit, exclude)

    def outbox_stats(self) -> dict[str, tuple[int, float | None]]:
        return queries.outbox_stats(self._read())

    def outbox_dead_counts(self) -> dict[str, int]:
        return queries.outbox_dead_counts(self._read())

    def outbox_dead(self, limit: int = 100) -> list[DeadOutboxRow]:
        return queries.outbox_dead(self._read(), limit)

    def active_alerts(self) -> list[AlertRecord]:
        return queries.active_alerts(self._read())

    def recent_alerts(self, limit: int = 200) -> list[AlertRecord]:
        return queries.recent_alerts(self._read(), limit)

    def events_for(
        self, source: str | None = None, kind: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return queries.events_for(self._read(), source, kind, limit)

    def last_seq(self) -> dict[str, int]:
        return queries.last_seq(self._read())

    def last_device_seq(self) -> dict[str, int]:
        return queries.last_device_seq(self._read())

    def device_states(self) -> list[DeviceStateRow]:
        return queries.device_states(self._read())

    def latest_readings(self, metrics: Collection[str]
                        ) -> dict[tuple[str, str], tuple[int, float]]:
        return queries.latest_readings(self._read(), metrics)

    def reading_at(self, source: str, metric: str, minute: int) -> float | None:
        return queries.reading_at(self._read(), source, metric, minute)

    def minute_series(self, source: str, metric: str, since_minute: int,
                      *, value: str = "avg") -> list[tuple[float, float]]:
        return queries.minute_series(self._read(), source, metric, since_minute, value=value)

    # For metrics.

    @property
    def writer_queue_depth(self) -> int:
        """Batches submitted and not yet committed (or failed)."""
        return len(self._uncommitted)

    @property
    def commits(self) -> int:
        return 0 if self._writer is None else self._writer.commits

    @property
    def last_commit_s(self) -> float:
        return 0.0 if self._writer is None else self._writer.last_commit_s

    @property
    def wal_frames(self) -> int:
        """Pages in the WAL at the checkpointer's latest pass."""
        return 0 if self._checkpointer is None else self._checkpointer.wal_frames

    @property
    def checkpoint_failures(self) -> int:
        return 0 if self._checkpointer is None else self._checkpointer.failures

    @property
    def failed_batches(self) -> int:
        return 0 if self._writer is None else self._writer.failed_batches
