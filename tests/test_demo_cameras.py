"""`compound-gateway demo --cameras N` serves N simulated cameras and the gateway watches
them: a camera is up on /metrics, and the camera entries past N stay as the site file says."""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.request
from pathlib import Path

from tests.brokers import free_port

ROOT = Path(__file__).resolve().parent.parent


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
        return body.decode()


def camera_up(metrics: str) -> dict[str, float]:
    up: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("gateway_camera_up{"):
            labels, value = line.rsplit(" ", 1)
            camera = labels.split('camera="', 1)[1].split('"', 1)[0]
            up[camera] = float(value)
    return up


async def test_demo_watches_its_simulated_cameras(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "demo", "--data-dir", str(tmp_path / "demo"),
        "--http-port", str(port), "--cameras", "3",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log.open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    up: dict[str, float] = {}
    try:
        async with asyncio.timeout(90):
            while True:
                assert proc.returncode is None, log.read_text()[-2000:]
                try:
                    up = camera_up(await asyncio.to_thread(get, f"{base}/metrics"))
                    if up and all(v == 1 for v in up.values()):
                        break
                except OSError:
                    pass  # not listening yet: ask again
                await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert sorted(up) == ["cam-001", "cam-002", "cam-003"]  # only the demo's three
    assert "cameras:         3 simulated" in out.decode()
