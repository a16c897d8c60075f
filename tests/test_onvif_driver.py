"""The ONVIF monitor against simulated cameras over real sockets: device information,
clock drift, the sub-stream, PullPoint events becoming typed events, a subscription
renewed before it expires, re-created after a reboot and given back when the monitor
stops; malformed SOAP and SOAP faults are counted, the camera's monitor reconnects, and
the camera beside it keeps delivering."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from drivers.onvif.driver import OnvifMonitor, Timing
from drivers.rtsp.config import CameraDevice
from gateway.supervisor import Backoff, LinkState, Supervisor
from simulators.camera_clips import ClipSpec
from simulators.cameras import CameraFarm
from tests.camera_sink import RecordingSink

# Subscriptions live 2 s (renewed every second), polls wait 0.3 s, the clock is read
# every second.
FAST = Timing(answer_s=2.0, lifetime_s=2.0, poll_s=0.3, time_every_s=1.0,
              unsubscribe_s=1.0)


@dataclass
class Watched:
    farm: CameraFarm
    sink: RecordingSink
    monitors: dict[str, OnvifMonitor]
    supervisors: dict[str, Supervisor]
    tasks: dict[str, asyncio.Task[None]]

    async def status(self, camera: str) -> dict[str, object]:
        found: dict[str, object] = json.loads(await self.farm.control(f"{camera} status"))[
            camera]
        return found


@pytest.fixture
async def watched() -> AsyncIterator[Watched]:
    farm = CameraFarm.build(2, ClipSpec("h264"), username="viewer", password="pw")
    sink = RecordingSink()
    async with farm:
        monitors, sups, tasks = {}, {}, {}
        for cam in farm.cameras.values():
            device = CameraDevice(driver="rtsp", id=cam.id, kind="camera", zone="main-gate",
                                  address=cam.url, onvif=cam.onvif.device_url,
                                  username="viewer", password={"env": "UNUSED"})
            monitor = OnvifMonitor(device, sink, password="pw", timing=FAST)
            sup = Supervisor(monitor, backoff=Backoff(base_s=0.05, cap_s=0.3), sink=sink,
                             family="camera.onvif")
            monitors[cam.id], sups[cam.id] = monitor, sup
            tasks[cam.id] = asyncio.create_task(sup.run(), name=f"test:{cam.id}")
        try:
            yield Watched(farm, sink, monitors, sups, tasks)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)


async def until(check: Callable[[], bool], deadline_s: float = 10.0) -> None:
    async with asyncio.timeout(deadline_s):
        while not check():
            await asyncio.sleep(0.02)


def kinds(w: Watched, camera: str, prefix: str = "camera.") -> list[str]:
    return [k for k in w.sink.kinds(camera) if k.startswith(prefix)]


async def test_device_clock_profiles_events_and_renewal(watched: Watched) -> None:
    w = watched
    m = w.monitors["cam-001"]
    await until(lambda: w.supervisors["cam-001"].state is LinkState.UP)
    [info] = [e for e in w.sink.events if e.kind == "camera.onvif.info"
              and e.source == "cam-001"]
    cam = w.farm["cam-001"]
    assert (info.data["manufacturer"], info.data["model"], info.data["serial"]) == (
        cam.onvif.manufacturer, cam.onvif.model, cam.onvif.serial)
    assert info.data["sub_stream"] == cam.onvif.stream_url("sub")
    assert m.figures.snapshot_uri == cam.onvif.snapshot_url("sub")
    assert m.figures.drift_s is not None and abs(m.figures.drift_s) < 2

    assert await w.farm.control("cam-001 clock_drift 120") == "ok"
    await until(lambda: (m.drift() or 0) > 100)
    drifts = [r.value for r in w.sink.readings if r.metric == "clock_drift_s"
              and r.source == "cam-001"]
    assert drifts[-1] == pytest.approx(120, abs=2)

    # Events from the camera's analytics: the picture goes dark, then is covered.
    assert await w.farm.control("cam-001 motion on") == "ok"
    assert await w.farm.control("cam-001 picture black") == "ok"
    await until(lambda: {"camera.motion", "camera.too_dark"} <= set(kinds(w, "cam-001")))
    assert await w.farm.control("cam-001 picture covered") == "ok"
    await until(lambda: {"camera.too_dark.end", "camera.tamper", "camera.scene_change"}
                <= set(kinds(w, "cam-001")))
    tamper = next(e for e in w.sink.events if e.kind == "camera.tamper")
    assert tamper.severity.label == "major"
    assert tamper.data["topic"] == "RuleEngine/TamperDetector/Tamper"
    assert tamper.device_time is not None
    # Each change once: the Initialized "false" of a new subscription is no event.
    assert kinds(w, "cam-001").count("camera.too_dark") == 1
    assert "camera.motion.end" not in kinds(w, "cam-001")

    # Renewed before its 2 s ran out, and the same subscription throughout.
    await until(lambda: m.renewals >= 2)
    status = await w.status("cam-001")
    assert (status["subscriptions"], status["subscriptions_created"]) == (1, 1)
    assert m.subscriptions == 1 and w.sink.rejections == {}


async def test_reboot_then_stop(watched: Watched) -> None:
    w = watched
    m = w.monitors["cam-001"]
    await until(lambda: all(s.state is LinkState.UP for s in w.supervisors.values()))
    assert await w.farm.control("cam-001 motion on") == "ok"
    await until(lambda: "camera.motion" in kinds(w, "cam-001"))

    # A reboot forgets the subscription (and the motion): a new one, and the end of it.
    assert await w.farm.control("cam-001 reboot 0.5") == "ok"
    await until(lambda: w.supervisors["cam-001"].state is LinkState.DOWN)
    await until(lambda: w.supervisors["cam-001"].state is LinkState.UP)
    await until(lambda: "camera.motion.end" in kinds(w, "cam-001"))
    status = await w.status("cam-001")
    assert status["subscriptions"] == 1
    assert m.subscriptions + m.resubscribed >= 2
    assert kinds(w, "cam-001", "camera.onvif.") == ["camera.onvif.info"] * 2
    # The link's own transitions, once each, under the link's name.
    assert kinds(w, "onvif:cam-001") == [
        "camera.onvif.up", "camera.onvif.down", "camera.onvif.up"]

    # Stopping gives every subscription back: the cameras hold none.
    for task in w.tasks.values():
        task.cancel()
    await asyncio.gather(*w.tasks.values(), return_exceptions=True)
    for camera in ("cam-001", "cam-002"):
        status = await w.status(camera)
        assert status["subscriptions"] == 0, camera
        assert status["unsubscribed"] == 1, camera


@pytest.mark.parametrize(("mode", "reason"), [
    ("malformed", "malformed_soap"), ("truncated", "malformed_soap"), ("fault", "soap_fault")])
async def test_bad_answers_are_counted_and_the_monitor_recovers(
        watched: Watched, mode: str, reason: str) -> None:
    w = watched
    await until(lambda: all(s.state is LinkState.UP for s in w.supervisors.values()))
    assert await w.farm.control(f"cam-001 onvif {mode}") == "ok"
    await until(lambda: w.supervisors["cam-001"].state is LinkState.DOWN)
    assert w.sink.rejections[("cam-001", reason)] >= 1
    assert set(w.sink.rejections) == {("cam-001", reason)}
    # The camera beside it keeps delivering.
    assert await w.farm.control("cam-002 motion on") == "ok"
    await until(lambda: "camera.motion" in kinds(w, "cam-002"))
    assert w.supervisors["cam-002"].state is LinkState.UP

    assert await w.farm.control("cam-001 onvif ok") == "ok"
    await until(lambda: w.supervisors["cam-001"].state is LinkState.UP)
    assert w.supervisors["cam-001"].restarts >= 1
    failed = w.sink.rejections[("cam-001", reason)]
    await asyncio.sleep(0.5)
    assert w.sink.rejections[("cam-001", reason)] == failed  # counted only while it lasted


async def test_a_clock_jump_starts_a_new_session_not_a_long_wait(watched: Watched) -> None:
    """A camera that refuses login timestamps 5 s off its clock: when its clock jumps,
    the session is started again with the new offset, within the short backoff."""
    w = watched
    m = w.monitors["cam-001"]
    await until(lambda: w.supervisors["cam-001"].state is LinkState.UP)
    assert await w.farm.control("cam-001 token_window 5") == "ok"
    assert await w.farm.control("cam-001 clock_drift -300") == "ok"
    await until(lambda: w.supervisors["cam-001"].restarts >= 1)
    await until(lambda: w.supervisors["cam-001"].state is LinkState.UP, 5.0)
    assert (m.drift() or 0) == pytest.approx(-300, abs=2)
    assert w.supervisors["cam-001"].failures.get("auth", 0) == 0
    assert await w.farm.control("cam-002 motion on") == "ok"
    await until(lambda: "camera.motion" in kinds(w, "cam-002"))


async def test_a_camera_without_events_is_watched_for_its_device_and_clock(
        caplog: pytest.LogCaptureFixture) -> None:
    farm = CameraFarm.build(1, ClipSpec("h264"))
    sink = RecordingSink()
    async with farm:
        assert await farm.control("cam-001 onvif no_events") == "ok"
        cam = farm["cam-001"]
        device = CameraDevice(driver="rtsp", id=cam.id, kind="camera", zone="main-gate",
                              address=cam.url, onvif=cam.onvif.device_url)
        monitor = OnvifMonitor(device, sink, timing=FAST)
        sup = Supervisor(monitor, backoff=Backoff(base_s=0.05, cap_s=0.3), sink=sink,
                         family="camera.onvif")
        task = asyncio.create_task(sup.run())
        try:
            await until(lambda: sup.state is LinkState.UP)
            assert monitor.events is False
            assert [e.kind for e in sink.events if e.kind == "camera.onvif.info"] == [
                "camera.onvif.info"]
            assert monitor.figures.snapshot_uri == cam.onvif.snapshot_url("sub")
            # The clock is still read every time_every_s: a drift is told.
            assert await farm.control("cam-001 clock_drift 90") == "ok"
            await until(lambda: (monitor.drift() or 0) > 80)
            assert sup.state is LinkState.UP and sup.restarts == 0
            assert sink.rejections == {}
            said = [r for r in caplog.records if "no ONVIF PullPoint events" in r.getMessage()]
            assert len(said) == 1
            status = json.loads(await farm.control("cam-001 status"))["cam-001"]
            assert status["subscriptions_created"] == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
