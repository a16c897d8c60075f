"""The daemon as a real process: kill -9 mid-burst loses no committed alarm; SIGTERM
stops it promptly with the store flushed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.brokers import Mosquitto, free_port
from tests.harness import DeskSubscriber, detectors, write_site


def start_daemon(site: Path, http_port: int, log: Path,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--site", str(site),
         "--http-port", str(http_port)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        env=env,
    )


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while True:
            assert proc.poll() is None, "the daemon exited"
            try:
                body = await asyncio.to_thread(
                    lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    .read())
                doc = json.loads(body)
                if all(state == "up" for state in doc["links"].values()):
                    return
            except OSError:
                pass  # not listening yet: ask again
            await asyncio.sleep(0.1)


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=5) as conn:
        return conn.execute(sql).fetchall()


async def test_kill_9_during_a_burst_loses_no_committed_alarm(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port), detectors=12)
    db = tmp_path / "data" / "gateway.db"
    port = free_port()
    log = tmp_path / "daemon.log"
    async with DeskSubscriber(mosquitto.host, mosquitto.port) as desk:
        proc = start_daemon(site, port, log)
        try:
            await wait_healthy(port, proc)
            async with detectors(mosquitto.host, mosquitto.port) as hd:
                # A burst: every detector toggles alarm on and off, as fast as QoS 1 allows.
                for round_ in range(40):
                    for n in range(1, 13):
                        await hd.send(f"hd-{n:02d}", 60.0 if round_ % 2 == 0 else 25.0,
                                      alarm=round_ % 2 == 0)
                    if round_ == 20:
                        # Mid-burst, once the daemon has committed something (on a busy
                        # machine it may not have yet), it dies without a word.
                        async with asyncio.timeout(15):
                            while not query(db, "select id from alerts limit 1"):
                                await asyncio.sleep(0.01)
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait()
            committed_before_restart = query(db, "select id, state from alerts")
            assert committed_before_restart, "nothing was committed before the kill"

            proc = start_daemon(site, port, log)
            await wait_healthy(port, proc)
            # Caught up: every alarm change of the burst (the broker kept those sent while
            # the daemon was dead) is an event, and the outbox is empty. On a busy machine
            # the backlog arrives after the restart, so an empty outbox alone proves nothing.
            changes = 40 * 12
            async with asyncio.timeout(30):
                while (query(db, "select count(*) from events "
                                 "where kind like 'fire.detector.alarm%'")[0][0] < changes
                       or query(db, "select count(*) from outbox")[0][0] != 0):
                    await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        alerts = query(db, "select id, state from alerts")
        expected = {(str(a), "raised") for a, _ in alerts}
        expected |= {(str(a), "cleared") for a, state in alerts if state == "resolved"}
        # The outbox is empty once the broker acked; the desk hears it a moment later.
        await desk.wait_for(lambda d: expected <= d.changes(), timeout=15)
        delivered = desk.changes()

    assert query(db, "pragma integrity_check") == [("ok",)]
    for alert_id, _state in committed_before_restart:
        assert (alert_id, "raised") in delivered, alert_id
    assert expected <= delivered
    # Every alarm event that reached the store kept its place in its detector's sequence.
    for (source,) in query(db, "select distinct source from events"):
        seqs = [r[0] for r in query(db, f"select seq from events where source='{source}' "
                                        "order by seq")]
        assert seqs == sorted(set(seqs)), source


async def test_sigterm_stops_within_5_s_with_the_store_flushed(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port))
    db = tmp_path / "data" / "gateway.db"
    port = free_port()
    proc = start_daemon(site, port, tmp_path / "daemon.log")
    try:
        await wait_healthy(port, proc)
        async with detectors(mosquitto.host, mosquitto.port) as hd:
            for n in range(1, 5):
                await hd.send(f"hd-{n:02d}", 21.0 + n)
            await hd.send("hd-01", 30.0, fault="dirty")
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The minute still being aggregated was written on the way out.
    minutes = query(db, "select source, metric, count from readings where metric='temperature' "
                        "order by source")
    assert [m[0] for m in minutes] == ["hd-01", "hd-02", "hd-03", "hd-04"]
    assert query(db, "select kind from events where source='hd-01'") == [
        ("fire.detector.fault",)]
    assert "gateway stopped; store flushed" in (tmp_path / "daemon.log").read_text()
