"""The store's checkpointer: a thread that copies the WAL back into the database file,
so the writer's commits never do it.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: that
commit waits for the copy and two more fsyncs (the database file and the WAL). Measured
here it doubled the commit's p99 (docs/benchmarks.md, "Checkpoints off the commit path").
The writer's connection therefore has `wal_autocheckpoint=0`, and this thread, on its own
connection, runs passive checkpoints: they never block the writer or a reader.

A passive checkpoint that copied every frame lets the writer's next transaction start the
WAL over from its beginning. One that raced a commit leaves a few frames behind, so while
the WAL is longer than `RESTARTED_FRAMES` the thread checks again after a few milliseconds,
until the WAL has started over. Should the WAL still grow past `CEILING_FRAMES` (readers
that never let go), a blocking RESTART checkpoint bounds it, logged each time.
A failed checkpoint loses nothing (the frames stay in the WAL); it is logged once per
change of reason and tried again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("gateway.store")

# A WAL at most this long (frames: pages written) counts as started over.
RESTARTED_FRAMES = 1_000
# Past this (64 MiB of 4 KiB pages) the checkpoint may block the writer to bound the WAL.
CEILING_FRAMES = 16_384
IDLE_S = 0.25
CHASE_S = 0.005


def connect_checkpointer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=2000")
    # A RESTART checkpoint truncates the WAL back to this, as the writer's own would.
    conn.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
    return conn


class Checkpointer:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-checkpoint", daemon=True)
        self._failing: str | None = None
        self.checkpoints = 0
        self.restarts = 0
        self.failures = 0
        self.wal_frames = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ends the thread; the writer's own TRUNCATE checkpoint at close follows it."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            conn = connect_checkpointer(self._path)
        except sqlite3.Error as exc:
            log.error("store checkpointer could not open; SQLite's own checkpoints are "
                      "off, the WAL grows until close error=%r", exc)
            return
        try:
            wait_s = self.pass_once(conn)
            while not self._stop.wait(wait_s):
                wait_s = self.pass_once(conn)
        except BaseException:
            # Only a bug gets here; say so loudly. Nothing is lost: the WAL grows until
            # the store closes, whose own checkpoint folds it back.
            log.critical("store checkpointer thread died", exc_info=True)
            raise
        finally:
            conn.close()

    def pass_once(self, conn: sqlite3.Connection) -> float:
        """One passive checkpoint; returns how long to wait before the next."""
        try:
            _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
            self.checkpoints += 1
            if frames > CEILING_FRAMES:
                log.warning("event=wal_ceiling frames=%d: a blocking checkpoint bounds it",
                            frames)
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
                self.restarts += 1
        except sqlite3.Error as exc:
            self.failures += 1
            reason = str(exc)
            if reason != self._failing:
                log.error("store checkpoint failed; the frames stay in the WAL error=%r", exc)
                self._failing = reason
            return IDLE_S
        if self._failing is not None:
            log.info("store checkpoint works again")
            self._failing = None
        self.wal_frames = max(int(frames), 0)
        return IDLE_S if frames <= RESTARTED_FRAMES else CHASE_S
