"""The store's checkpointer: the WAL is copied back beside the commits, never in them."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.events import Event, Severity
from gateway.store import Store, WriteBatch
from gateway.store import checkpoint as ck

T0 = 1_764_000_000.0


def events(n: int, start: int) -> list[Event]:
    return [
        Event(kind="device.telemetry", source=f"hd-{i % 50:02d}", seq=start + i, time=T0 + i,
              severity=Severity.INFO, zone="b1-f1", data={"celsius": 21.5, "pad": "x" * 400})
        for i in range(n)
    ]  # fmt: skip


def wal_frames(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # A passive checkpoint of an empty-handed connection answers with the WAL's length.
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0][1])
    finally:
        conn.close()


async def test_commits_leave_checkpoints_to_the_thread_and_the_wal_starts_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.db"
    store = Store(path, clock=ManualClock(T0))
    store.open(asyncio.get_running_loop())
    try:
        writer_conn = store._writer._conn  # type: ignore[union-attr]
        assert writer_conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        # About 3,000 pages in 60 commits: three times SQLite's own checkpoint threshold.
        for k in range(60):
            await store.submit(WriteBatch(events=events(200, k * 200)))
        # The checkpointer copies the frames back; the writer's next commit then starts
        # the WAL over, so it stays short although the writer never checkpoints.
        deadline = asyncio.get_running_loop().time() + 20
        more = 0
        while True:
            await store.submit(WriteBatch(events=events(1, 100_000 + more)))
            more += 1
            frames = wal_frames(path)
            if frames <= ck.RESTARTED_FRAMES:
                break
            assert asyncio.get_running_loop().time() < deadline, f"WAL still {frames} pages"
            await asyncio.sleep(0.1)
        assert store.checkpoint_failures == 0
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 60 * 200 + more
    finally:
        conn.close()
    # The close's own TRUNCATE checkpoint leaves one self-contained file.
    assert not (tmp_path / "gateway.db-wal").exists() or (
        (tmp_path / "gateway.db-wal").stat().st_size == 0
    )


def test_a_failing_checkpoint_is_logged_once_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").fetchall()
    checkpointer = ck.Checkpointer(path)
    broken = ck.connect_checkpointer(path)
    broken.close()  # every statement on it now raises sqlite3.ProgrammingError
    caplog.set_level(logging.INFO, logger="gateway.store")
    assert checkpointer.pass_once(broken) == ck.IDLE_S
    assert checkpointer.pass_once(broken) == ck.IDLE_S
    assert checkpointer.failures == 2
    failed = [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
    assert len(failed) == 1
    working = ck.connect_checkpointer(path)
    try:
        checkpointer.pass_once(working)
    finally:
        working.close()
    assert any("checkpoint works again" in r.getMessage() for r in caplog.records)


def test_a_wal_past_the_ceiling_is_bounded_by_a_blocking_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x BLOB)")
    for _ in range(100):
        writer.execute("INSERT INTO t VALUES (randomblob(3000))")
    monkeypatch.setattr(ck, "CEILING_FRAMES", 50)
    checkpointer = ck.Checkpointer(path)
    conn = ck.connect_checkpointer(path)
    caplog.set_level(logging.WARNING, logger="gateway.store")
    try:
        checkpointer.pass_once(conn)
    finally:
        conn.close()
    assert checkpointer.restarts == 1
    assert any("wal_ceiling" in r.getMessage() for r in caplog.records)
    writer.execute("INSERT INTO t VALUES (1)")
    writer.close()
    assert wal_frames(path) <= 2
