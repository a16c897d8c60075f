"""The alarm stage clock (gateway/trace.py) the heat benchmark reads: with
`GATEWAY_TRACE_ALARMS` set, the daemon as a process writes, at exit, one line per alert it
raised, stamped at every stage in the order an alarm passes them; unset, it writes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.brokers import Mosquitto, free_port
from tests.harness import DeskSubscriber, detectors, write_site
from tests.test_daemon_process import start_daemon, wait_healthy

STAGES = ("read", "routed", "pipeline", "processed", "commit_start", "commit_end",
          "committed", "fetched", "acked")


async def test_a_traced_daemon_stamps_each_alarm_stage_in_order(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port), detectors=3)
    trace_file = tmp_path / "trace.jsonl"
    port = free_port()
    async with DeskSubscriber(mosquitto.host, mosquitto.port) as desk:
        proc = start_daemon(site, port, tmp_path / "daemon.log",
                            env={**os.environ, "GATEWAY_TRACE_ALARMS": str(trace_file)})
        try:
            await wait_healthy(port, proc)
            async with detectors(mosquitto.host, mosquitto.port) as hd:
                await hd.send("hd-01", 70.0, alarm=True)
                await hd.send("hd-02", 21.0)  # no alarm: not traced
                await hd.send("hd-03", 75.0, alarm=True)
            await desk.wait_for(lambda d: len([m for m in d.messages
                                               if m.get("change") == "raised"
                                               and m["alert"]["rule"] == "fire.alarm"]) >= 2,
                                timeout=15)
            raised = {m["alert"]["id"] for m in desk.messages
                      if m.get("change") == "raised" and m["alert"]["rule"] == "fire.alarm"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    lines = [json.loads(line) for line in trace_file.read_text().splitlines()]
    traced = {line["alert"]: line for line in lines}
    assert raised <= traced.keys()
    assert {traced[a]["source"] for a in raised} == {"hd-01", "hd-03"}
    for alert in raised:
        stamps = traced[alert]["stages"]
        assert [s for s in STAGES if s in stamps] == list(STAGES), stamps
        # The loop's own way: the forwarder fetches the row once the commit has made it
        # visible, not necessarily after this batch's answer (another alert's wake-up
        # may fetch it), so after the commit started.
        way = ("read", "routed", "pipeline", "processed", "commit_start", "fetched", "acked")
        times = [stamps[s] for s in way]
        assert times == sorted(times), json.dumps(stamps)
        # The writer thread stamps `commit_end` once the commit has returned and it has
        # the interpreter back, which may be after the loop fetched the row; the loop
        # hears of the commit only after that stamp.
        assert stamps["commit_start"] <= stamps["commit_end"] <= stamps["committed"], (
            json.dumps(stamps))


def test_the_clock_is_off_unless_asked_for() -> None:
    code = ("import gateway.trace as t, sys; "
            "sys.exit(0 if (t.ON, t.PATH) == (False, None) else 1)")
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_TRACE_ALARMS"}
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
