"""The main job, as a person starts it: `compound-gateway demo` comes up with its broker,
the 48 simulated detectors and the gateway, serves the desk, and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

from tests.brokers import free_port

ROOT = Path(__file__).resolve().parent.parent


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
        return body


async def test_demo_comes_up_reports_and_stops(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(tmp_path / "demo"),
        "--http-port", str(port),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=(tmp_path / "demo.log").open("w"),
        start_new_session=True,  # its own group: a failed run ends the simulators too
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(60):
            while True:
                assert proc.returncode is None, (tmp_path / "demo.log").read_text()[-2000:]
                try:
                    health = json.loads(await asyncio.to_thread(get, f"{base}/healthz"))
                    readings = [line for line in (await asyncio.to_thread(
                        get, f"{base}/metrics")).decode().splitlines()
                        if line.startswith("gateway_readings_total ")]
                    if (health["links"] and all(v == "up" for v in health["links"].values())
                            and readings and float(readings[0].split()[1]) > 0):
                        break
                except OSError:
                    pass  # not listening yet: ask again
                await asyncio.sleep(0.5)
        page = (await asyncio.to_thread(get, f"{base}/")).decode()
        feed = json.loads(await asyncio.to_thread(get, f"{base}/api/alerts"))
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            # The demo and every simulator it started (they would hold its stdout open).
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert proc.returncode == 0
    assert "Security desk" in page
    assert set(feed) == {"active", "recent"}
    assert f"security desk:   {base}/" in out.decode()
    assert (tmp_path / "demo" / "gateway.db").exists()
