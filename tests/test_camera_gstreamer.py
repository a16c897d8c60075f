"""The stream monitor against a camera nobody here wrote: GStreamer's RTSP server (Debian's
gst-rtsp-server), H.264 with a Digest login and H.265 with a Basic one, over RTP/TCP.
Both ends of the protocol are then shown: this, and FFmpeg reading the simulator."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from drivers.rtsp.config import CameraDevice
from drivers.rtsp.driver import CameraDriver, Timing
from gateway.supervisor import Backoff, LinkState, Supervisor
from tests.camera_sink import RecordingSink

SERVER = Path(__file__).with_name("gst_rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with PyGObject and GStreamer's typelibs


@contextmanager
def gst_camera(codec: str, method: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), codec, method, "viewer", "pw"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"rtsp://127.0.0.1:{port}/sub", proc
    finally:
        proc.terminate()
        proc.wait(10)


async def until(check: Callable[[], bool], deadline_s: float = 20.0) -> None:
    async with asyncio.timeout(deadline_s):
        while not check():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(("codec", "method"), [("h264", "digest"), ("h265", "basic")])
async def test_gstreamers_camera_is_measured(codec: str, method: str) -> None:
    with gst_camera(codec, method) as (url, proc):
        dev = CameraDevice(driver="rtsp", id="cam-gst", kind="camera", zone="gate",
                           address=url, username="viewer")
        sink = RecordingSink()
        driver = CameraDriver(dev, sink, password="pw",
                              timing=Timing(stall_s=1.5, tick_s=0.1, report_s=0.5))
        sup = Supervisor(driver, backoff=Backoff(base_s=0.05, cap_s=0.2), sink=sink,
                         family="camera.stream")
        task = asyncio.create_task(sup.run())
        try:
            await until(lambda: any(r.metric == "keyframe_interval" for r in sink.readings))
            await until(lambda: len([r for r in sink.readings if r.metric == "stream_fps"]) >= 3)
            snap = driver.snapshot()
            assert snap is not None
            assert snap.fps == pytest.approx(25.0, rel=0.1)
            assert snap.keyframe_interval_s == pytest.approx(1.0, rel=0.1)
            assert snap.bitrate_bps > 0
            assert snap.broken_units == 0 and snap.rejected == 0
            assert sup.state is LinkState.UP
            proc.terminate()  # the camera goes away
            await until(lambda: sink.kinds("cam-gst") == ["camera.stream.up",
                                                          "camera.stream.down"])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert sink.rejections == {}


async def test_gstreamers_camera_refuses_a_wrong_password() -> None:
    with gst_camera("h264", "digest") as (url, _):
        dev = CameraDevice(driver="rtsp", id="cam-gst", kind="camera", zone="gate",
                           address=url, username="viewer")
        sink = RecordingSink()
        sup = Supervisor(CameraDriver(dev, sink, password="wrong"),
                         backoff=Backoff(patient_s=30), sink=sink, family="camera.stream")
        task = asyncio.create_task(sup.run())
        try:
            await until(lambda: sup.failures.get("auth", 0) == 1)
            assert sink.kinds("cam-gst") == ["camera.stream.down"]
            assert "refused the login" in str(sink.events[0].data["reason"])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
