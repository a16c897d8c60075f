"""Commit latency of the store's writer connection: SQLite's own checkpoints against the
gateway's checkpointer thread.

    .venv/bin/python benchmarks/store_commits.py [--seconds 30] [--rounds 2] [--dir PATH]

Each run writes batches of `--rows` events into a fresh store file (the real schema,
the writer's pragmas: WAL, synchronous=FULL), one batch every `--gap-ms`, as the
pipeline does under a steady load, and times every BEGIN..COMMIT. The two modes run by
turns, `--rounds` times each, on the same disk:
- sqlite: the writer's connection checkpoints itself (wal_autocheckpoint=1000, SQLite's
  default): the commit that crosses the threshold copies the WAL back and syncs twice;
- thread: wal_autocheckpoint=0 and `gateway.store.checkpoint.Checkpointer` beside it.

Prints per run: commits, p50 / p99 / p99.9 / max of the commit, the WAL's largest
length seen, and per mode the median of the runs' p99 with the ratio thread / sqlite.
Put the store on the disk you care about (`--dir`): the figures are the disk's fsync.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.store.checkpoint import Checkpointer  # noqa: E402
from gateway.store.schema import connect_writer, migrate  # noqa: E402

BODY = json.dumps({"celsius": 23.5, "flags": [], "battery": 97, "rssi": -61})


def run(mode: str, folder: Path, seconds: float, rows: int, gap_s: float) -> dict[str, float]:
    path = folder / f"{mode}-{time.monotonic_ns()}.db"
    migrate(path, time.time())
    conn = connect_writer(path)
    checkpointer: Checkpointer | None = None
    if mode == "thread":
        conn.execute("PRAGMA wal_autocheckpoint=0")
        checkpointer = Checkpointer(path)
        checkpointer.start()
    else:
        conn.execute("PRAGMA wal_autocheckpoint=1000")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
    latencies: list[float] = []
    largest_wal = 0
    seq = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            batch = []
            now = time.time()
            for _ in range(rows):
                seq += 1
                batch.append(event_row(columns, seq, now))
            started = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany(
                f"INSERT INTO events ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})", batch)
            conn.execute("COMMIT")
            latencies.append(time.perf_counter() - started)
            if checkpointer is not None:
                largest_wal = max(largest_wal, checkpointer.wal_frames)
            time.sleep(gap_s)
    finally:
        if checkpointer is not None:
            checkpointer.stop()
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    latencies.sort()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {"commits": len(latencies), "p50": q(0.5), "p99": q(0.99), "p999": q(0.999),
            "max": latencies[-1] * 1000, "wal": largest_wal}


def event_row(columns: list[str], seq: int, now: float) -> list[object]:
    values: dict[str, object] = {
        "id": f"ev-{seq:012d}", "kind": "device.telemetry", "source": f"hd-{seq % 48:02d}",
        "seq": seq, "time": now, "device_time": now, "severity": 0, "zone": "b1-f1",
        "data": BODY,
    }
    return [values.get(c) for c in columns]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rows", type=int, default=100, help="events per commit")
    ap.add_argument("--gap-ms", type=float, default=10.0, help="between commits")
    ap.add_argument("--dir", type=Path, default=None, help="where the store files go")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        p99s: dict[str, list[float]] = {"sqlite": [], "thread": []}
        for r in range(args.rounds):
            for mode in ("sqlite", "thread"):
                f = run(mode, Path(tmp), args.seconds, args.rows, args.gap_ms / 1000)
                p99s[mode].append(f["p99"])
                wal = f"largest WAL {f['wal']:,.0f} pages" if mode == "thread" else ""
                print(f"round {r + 1} {mode:6s}  {f['commits']:,.0f} commits  p50 "
                      f"{f['p50']:.2f}  p99 {f['p99']:.2f}  p99.9 {f['p999']:.2f}  max "
                      f"{f['max']:.2f} ms  {wal}", flush=True)
        a, b = statistics.median(p99s["sqlite"]), statistics.median(p99s["thread"])
        print(f"median p99: sqlite's own checkpoints {a:.2f} ms, checkpointer thread "
              f"{b:.2f} ms; thread / sqlite = {b / a:.2f}")


if __name__ == "__main__":
    main()
