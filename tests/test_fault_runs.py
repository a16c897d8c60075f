"""The daemon tried as an operator would: a real process, a real mosquitto, faults
injected from outside it. In each run the final firing set equals the detectors' last
word, and every raise reaches the upstream topic.

- a backlog of alarm, clear, alarm queued while the daemon is down;
- a half-open ingest link (black-holed, no RST) while alarms change;
- kill -9, again and again, under load;
- a full disk (the process's file-size limit cut to nothing, then lifted) while alarms
  happen;
- a poison QoS 1 report followed by a genuine alarm.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import pytest

from tests.brokers import Mosquitto, free_port
from tests.harness import DeskSubscriber, Detectors, detectors, write_site
from tests.proxy import BlackHoleProxy


class Daemon:
    """`compound-gateway run` as a child process; its log goes through a pipe, so a
    file-size limit on the daemon cannot touch it."""

    def __init__(self, site: Path, log: Path) -> None:
        self.site, self.log_path = site, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._copier: threading.Thread | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "--site", str(self.site),
             "--http-port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        self._copier = threading.Thread(target=_copy, args=(self.proc.stderr, self.log_path),
                                        daemon=True)
        self._copier.start()

    def health(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz",
                                        timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str) -> dict[str, list[dict[str, object]]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
            doc: dict[str, list[dict[str, object]]] = json.loads(r.read())
            return doc

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return str(r.read().decode())

    async def wait_up(self, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while True:
                assert self.proc is not None and self.proc.poll() is None, "daemon exited"
                try:
                    status, doc = await asyncio.to_thread(self.health)
                    links = doc.get("links", {})
                    assert isinstance(links, dict)
                    if status == 200 and all(s == "up" for s in links.values()):
                        return
                except OSError:
                    pass  # not listening yet: ask again
                await asyncio.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _copy(stream: IO[bytes], path: Path) -> None:
    with path.open("ab") as out:
        for line in stream:
            out.write(line)
            out.flush()


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db, timeout=5) as conn:
        return conn.execute(sql).fetchall()


def firing_alarms(db: Path) -> set[str]:
    rows = query(db, "select source from alerts where rule='fire.alarm' and state='firing'")
    return {str(r[0]) for r in rows}


async def wait_quiet(db: Path, want: set[str], timeout: float = 40) -> None:
    """Until the store's firing alarms are `want` and the outbox is empty."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                if (firing_alarms(db) == want
                        and query(db, "select count(*) from outbox") == [(0,)]):
                    return
            except sqlite3.OperationalError:
                pass  # the daemon is migrating the file at start: ask again
            await asyncio.sleep(0.2)


class LastWord:
    """What the test's detectors last said, per detector."""

    def __init__(self, hd: Detectors) -> None:
        self.hd = hd
        self.alarm: dict[str, bool] = {}

    async def say(self, device: str, alarm: bool) -> None:
        self.alarm[device] = alarm
        await self.hd.send(device, 62.0 if alarm else 25.0, alarm=alarm)

    def firing(self) -> set[str]:
        return {d for d, a in self.alarm.items() if a}


def every_raise_delivered(db: Path, desk: DeskSubscriber) -> set[tuple[str, str]]:
    alerts = query(db, "select id, state from alerts")
    expected = {(str(a), "raised") for a, _ in alerts}
    expected |= {(str(a), "cleared") for a, state in alerts if state == "resolved"}
    return expected


async def test_a_backlog_of_alarm_clear_alarm_ends_in_alarm(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        site = write_site(tmp_path, devices=(broker.host, broker.port), detectors=4)
        db = tmp_path / "data" / "gateway.db"
        daemon = Daemon(site, tmp_path / "daemon.log")
        async with DeskSubscriber(broker.host, broker.port) as desk:
            daemon.start()
            await daemon.wait_up()  # its persistent session now exists on the broker
            assert daemon.stop() == 0
            async with detectors(broker.host, broker.port) as hd:
                said = LastWord(hd)
                for alarm in (True, False, True):
                    await said.say("hd-01", alarm)
                for alarm in (True, False):
                    await said.say("hd-02", alarm)
                await said.say("hd-03", True)
            daemon.start()
            try:
                await daemon.wait_up()
                await wait_quiet(db, said.firing())
                feed = await asyncio.to_thread(daemon.get, "/api/alerts?state=firing")
                assert {a["source"] for a in feed["active"]
                        if a["rule"] == "fire.alarm"} == {"hd-01", "hd-03"}
            finally:
                daemon.stop()
            await desk.wait_for(lambda d: every_raise_delivered(db, d) <= d.changes())
    kinds = [k for (k,) in query(db, "select kind from events where source='hd-01' "
                                     "and kind like 'fire.detector.alarm%' order by seq")]
    assert kinds == ["fire.detector.alarm", "fire.detector.alarm_cleared",
                     "fire.detector.alarm"]


async def test_a_half_open_ingest_link_while_alarms_change(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        proxy = BlackHoleProxy(broker.host, broker.port)
        await proxy.start()
        site = write_site(tmp_path, devices=(proxy.host, proxy.port),
                          upstream=(broker.host, broker.port), detectors=4, keepalive_s=5)
        db = tmp_path / "data" / "gateway.db"
        daemon = Daemon(site, tmp_path / "daemon.log")
        try:
            async with (DeskSubscriber(broker.host, broker.port) as desk,
                        detectors(broker.host, broker.port) as hd):
                said = LastWord(hd)
                daemon.start()
                await daemon.wait_up()
                await said.say("hd-01", True)
                await wait_quiet(db, {"hd-01"})
                proxy.black_hole = True
                await said.say("hd-01", False)
                await said.say("hd-02", True)
                for alarm in (True, False, True):
                    await said.say("hd-03", alarm)
                await said.say("hd-04", True)
                # Found dead within 1.5 x keep-alive; reconnects are black-holed too.
                await asyncio.sleep(12)
                assert firing_alarms(db) == {"hd-01"}, "nothing can have crossed the hole"
                proxy.black_hole = False
                await wait_quiet(db, said.firing())
                await desk.wait_for(lambda d: every_raise_delivered(db, d) <= d.changes())
        finally:
            daemon.stop()
            await proxy.stop()
    assert "half-open" in daemon.log() or "silent" in daemon.log() or "keep" in daemon.log()


async def test_kill_9_again_and_again_under_load(tmp_path: Path) -> None:
    rng = random.Random(7)
    with Mosquitto() as broker:
        site = write_site(tmp_path, devices=(broker.host, broker.port), detectors=6)
        db = tmp_path / "data" / "gateway.db"
        daemon = Daemon(site, tmp_path / "daemon.log")
        async with (DeskSubscriber(broker.host, broker.port) as desk,
                    detectors(broker.host, broker.port) as hd):
            said = LastWord(hd)
            for _ in range(4):
                daemon.start()
                await daemon.wait_up()
                kill_at = rng.randrange(5, 60)
                for n in range(80):
                    device = f"hd-{rng.randrange(1, 7):02d}"
                    await said.say(device, not said.alarm.get(device, False))
                    if n == kill_at:
                        daemon.kill9()
                if daemon.proc is not None and daemon.proc.poll() is None:
                    daemon.kill9()
            daemon.start()
            try:
                await daemon.wait_up()
                await wait_quiet(db, said.firing(), timeout=60)
            finally:
                assert daemon.stop() == 0
            await desk.wait_for(lambda d: every_raise_delivered(db, d) <= d.changes(),
                                timeout=30)
    assert query(db, "pragma integrity_check") == [("ok",)]


async def test_a_full_disk_while_alarms_happen_then_space_returns(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        site = write_site(tmp_path, devices=(broker.host, broker.port), detectors=4)
        db = tmp_path / "data" / "gateway.db"
        daemon = Daemon(site, tmp_path / "daemon.log")
        async with (DeskSubscriber(broker.host, broker.port) as desk,
                    detectors(broker.host, broker.port) as hd):
            said = LastWord(hd)
            daemon.start()
            try:
                await daemon.wait_up()
                await said.say("hd-01", True)
                await wait_quiet(db, {"hd-01"})
                assert daemon.proc is not None
                # No file of the daemon's may grow by a byte: every commit fails, as on a
                # full disk (Python ignores SIGXFSZ, so the write returns EFBIG).
                _, hard = resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE)
                resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (1, hard))
                await said.say("hd-02", True)
                await said.say("hd-03", True)
                await said.say("hd-01", False)
                await said.say("hd-03", False)
                await said.say("hd-04", True)
                async with asyncio.timeout(15):
                    while (await asyncio.to_thread(daemon.health))[0] == 200:
                        await asyncio.sleep(0.2)
                status, doc = await asyncio.to_thread(daemon.health)
                assert status == 503 and doc["store_ok"] is False
                page = await asyncio.to_thread(daemon.metrics)
                assert "gateway_store_healthy 0.0" in page
                assert firing_alarms(db) == {"hd-01"}, "nothing may be committed meanwhile"
                await asyncio.sleep(2)
                resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
                await wait_quiet(db, said.firing(), timeout=40)
                await daemon.wait_up()
                page = await asyncio.to_thread(daemon.metrics)
                assert "gateway_store_healthy 1.0" in page
                assert "gateway_core_restarts_total 1.0" in page
            finally:
                assert daemon.stop() == 0
            await desk.wait_for(lambda d: every_raise_delivered(db, d) <= d.changes())
    log = daemon.log()
    assert log.count("store write failed") == 1
    assert "store commits again" in log
    assert query(db, "select action from audit where action='store.recovered'")


@pytest.mark.parametrize("poison", [
    b'{"seq": 1, "temp_c": ' + b"9" * 5000 + b', "alarm": true, "battery_pct": 50}',
    b'{"seq": 1, "temp_c": 1' + b"0" * 400 + b', "alarm": true, "battery_pct": 50}',
    b"[" * 50_000 + b"]" * 50_000,
])
async def test_a_poison_report_then_a_genuine_alarm(tmp_path: Path, poison: bytes) -> None:
    with Mosquitto() as broker:
        site = write_site(tmp_path, devices=(broker.host, broker.port), detectors=2)
        db = tmp_path / "data" / "gateway.db"
        daemon = Daemon(site, tmp_path / "daemon.log")
        async with detectors(broker.host, broker.port) as hd:
            daemon.start()
            try:
                await daemon.wait_up()
                await hd.send_raw("hd-01", poison, qos=1)
                said = LastWord(hd)
                await said.say("hd-02", True)
                await wait_quiet(db, {"hd-02"})
                page = await asyncio.to_thread(daemon.metrics)
                assert 'gateway_payloads_rejected_total{driver="mqtt"' in page
                status, _ = await asyncio.to_thread(daemon.health)
                assert status == 200
            finally:
                assert daemon.stop() == 0
            # Acknowledged and counted: the broker does not send it again on the next start.
            daemon.start()
            try:
                await daemon.wait_up()
                await asyncio.sleep(1.0)
                page = await asyncio.to_thread(daemon.metrics)
                assert 'gateway_payloads_rejected_total{driver="mqtt"' not in page
            finally:
                assert daemon.stop() == 0


async def test_a_second_daemon_on_the_same_data_folder_refuses_to_start(tmp_path: Path) -> None:
    with Mosquitto() as broker:
        site = write_site(tmp_path, devices=(broker.host, broker.port), detectors=2)
        first = Daemon(site, tmp_path / "first.log")
        first.start()
        assert first.proc is not None
        holder = first.proc.pid
        try:
            await first.wait_up()
            second = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "gateway.cli", "run", "--site", str(site),
                 "--http-port", str(free_port())],
                capture_output=True, text=True, timeout=30,
            )
            status, _ = await asyncio.to_thread(first.health)
        finally:
            assert first.stop() == 0
        assert second.returncode == 2, second.stderr
        assert "another gateway" in second.stderr and "data folder" in second.stderr
        assert f"pid {holder}" in second.stderr
        assert status == 200  # the first one never noticed
        # The lock dies with its holder: the folder is free again.
        again = Daemon(site, tmp_path / "again.log")
        again.start()
        try:
            await again.wait_up()
        finally:
            assert again.stop() == 0
