"""The camera stream monitor against simulated cameras over real sockets: every RTSP fault
becomes the right `camera.stream.*` event and clears when it ends; a camera that answers
garbage, oversized headers or absurd interleaved frames is counted, reconnects with
backoff, and the cameras beside it are unaffected; a camera's stream slot is never held
twice and is always given back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from drivers.rtsp.config import CameraDevice
from drivers.rtsp.driver import CameraDriver, Timing
from gateway.supervisor import Backoff, LinkState, Supervisor
from simulators.camera_clips import ClipSpec
from simulators.cameras import CameraFarm
from tests.camera_sink import RecordingSink

FAST = Timing(stall_s=1.0, tick_s=0.1, report_s=0.5, answer_s=2.0)


@dataclass
class Watched:
    farm: CameraFarm
    sink: RecordingSink
    drivers: dict[str, CameraDriver]
    supervisors: dict[str, Supervisor]


@pytest.fixture
async def watched(request: pytest.FixtureRequest) -> AsyncIterator[Watched]:
    count, codec, auth = getattr(request, "param", (3, "h264", "digest"))
    farm = CameraFarm.build(count, ClipSpec(codec), username="viewer", password="pw",
                            auth=auth)
    sink = RecordingSink()
    async with farm:
        drivers, sups, tasks = {}, {}, []
        for cam in farm.cameras.values():
            dev = CameraDevice(driver="rtsp", id=cam.id, kind="camera", zone="gate",
                               address=cam.url, username="viewer")
            d = CameraDriver(dev, sink, password="pw", timing=FAST)
            s = Supervisor(d, backoff=Backoff(base_s=0.05, cap_s=0.3, patient_s=0.3),
                           sink=sink, family="camera.stream")
            drivers[cam.id], sups[cam.id] = d, s
            tasks.append(asyncio.create_task(s.run(), name=f"watch:{cam.id}"))
        try:
            yield Watched(farm, sink, drivers, sups)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def until(check: Callable[[], bool], deadline_s: float = 15.0) -> None:
    async with asyncio.timeout(deadline_s):
        while not check():
            await asyncio.sleep(0.05)


def last(w: Watched, cam: str) -> str | None:
    kinds = w.sink.kinds(cam)
    return kinds[-1] if kinds else None


async def all_up(w: Watched) -> None:
    await until(lambda: all(s.state is LinkState.UP for s in w.supervisors.values()))


@pytest.mark.parametrize("watched", [(2, "h264", "digest"), (2, "h265", "basic")],
                         indirect=True)
async def test_a_stream_is_measured_from_its_framing(watched: Watched) -> None:
    await all_up(watched)
    await until(lambda: any(r.metric == "keyframe_interval" for r in watched.sink.readings))
    snap = watched.drivers["cam-001"].snapshot()
    assert snap is not None
    assert snap.fps == pytest.approx(25.0, rel=0.05)
    assert snap.keyframe_interval_s == pytest.approx(1.0)
    assert 50_000 < snap.bitrate_bps < 2_000_000
    assert snap.lost == 0 and snap.broken_units == 0 and snap.rejected == 0
    metrics = {r.metric for r in watched.sink.readings if r.source == "cam-001"}
    assert metrics == {"stream_fps", "stream_bitrate", "rtp_lost", "keyframe_interval"}
    assert watched.sink.kinds("cam-001") == ["camera.stream.up"]


@pytest.mark.parametrize(("fault", "reason"), [
    ("stall", "stalled"),
    ("refuse", "Unreachable"),
    ("auth_fail", ""),
])
async def test_a_fault_takes_the_stream_down_and_its_end_brings_it_up(
        watched: Watched, fault: str, reason: str) -> None:
    await all_up(watched)
    assert await watched.farm.control(f"cam-002 {fault} on") == "ok"
    if fault == "auth_fail":
        watched.farm["cam-002"].disconnect()  # a camera that changed its password, rebooted
    await until(lambda: last(watched, "cam-002") == "camera.stream.down")
    down = [e for e in watched.sink.events if e.kind == "camera.stream.down"]
    assert len(down) == 1 and down[0].source == "cam-002"
    if fault == "auth_fail":  # the drop comes first; every login after it is refused
        await until(lambda: watched.supervisors["cam-002"].failures.get("auth", 0) >= 1)
    else:
        assert reason in str(down[0].data["reason"])
    await asyncio.sleep(1.0)  # it stays down while the fault lasts: no second event
    assert watched.sink.kinds("cam-002") == ["camera.stream.up", "camera.stream.down"]
    assert await watched.farm.control(f"cam-002 {fault} off") == "ok"
    await until(lambda: last(watched, "cam-002") == "camera.stream.up")
    for other in ("cam-001", "cam-003"):
        assert watched.sink.kinds(other) == ["camera.stream.up"]
    assert watched.farm["cam-002"].peak_sessions == 1


async def test_a_dropped_connection_is_down_then_up(watched: Watched) -> None:
    await all_up(watched)
    assert await watched.farm.control("cam-001 disconnect now") == "ok"
    await until(lambda: watched.sink.kinds("cam-001") == [
        "camera.stream.up", "camera.stream.down", "camera.stream.up"])
    down = next(e for e in watched.sink.events if e.kind == "camera.stream.down")
    assert down.data["reason"] == "Unreachable: the camera closed the connection"


async def test_a_low_frame_rate_is_degraded_until_it_recovers(watched: Watched) -> None:
    await all_up(watched)
    await until(lambda: any(r.metric == "stream_fps" for r in watched.sink.readings))
    assert await watched.farm.control("cam-003 low_fps 2") == "ok"
    await until(lambda: last(watched, "cam-003") == "camera.stream.degraded")
    event = watched.sink.events[-1]
    assert "low frame rate" in str(event.data["reason"])
    assert watched.supervisors["cam-003"].state is LinkState.DEGRADED
    assert await watched.farm.control("cam-003 low_fps off") == "ok"
    await until(lambda: last(watched, "cam-003") == "camera.stream.up")
    assert watched.sink.kinds("cam-003") == [
        "camera.stream.up", "camera.stream.degraded", "camera.stream.up"]


@pytest.mark.parametrize(("fault", "rejected"), [
    ("garbage", "rtsp_garbage"),
    ("oversized", "rtsp_header_too_large"),
    ("absurd_length", "rtp_frame_too_large"),
])
async def test_a_camera_talking_nonsense_is_counted_and_retried_with_backoff(
        watched: Watched, fault: str, rejected: str) -> None:
    await all_up(watched)
    assert await watched.farm.control(f"cam-002 {fault} on") == "ok"
    watched.farm["cam-002"].disconnect()  # the next session meets the fault from the start
    sup = watched.supervisors["cam-002"]
    await until(lambda: watched.sink.rejections[("cam-002", rejected)] >= 3)
    assert sup.state is LinkState.DOWN
    assert sup.failures.get("protocol", 0) >= 3
    assert sup.backoff.attempt >= 3  # each retry waits longer
    # One transition however many times it failed: logged and told once.
    assert watched.sink.kinds("cam-002") == ["camera.stream.up", "camera.stream.down"]
    for other in ("cam-001", "cam-003"):
        assert watched.sink.kinds(other) == ["camera.stream.up"]
        assert watched.supervisors[other].state is LinkState.UP
        snap = watched.drivers[other].snapshot()
        assert snap is not None and snap.silent_s < 1.0
    assert {src for src, _ in watched.sink.rejections} == {"cam-002"}
    assert await watched.farm.control(f"cam-002 {fault} off") == "ok"
    await until(lambda: last(watched, "cam-002") == "camera.stream.up")
    assert watched.farm["cam-002"].peak_sessions == 1


async def test_the_stream_slot_is_given_back_when_watching_stops(watched: Watched) -> None:
    await all_up(watched)
    cam = watched.farm["cam-001"]
    assert len(cam.sessions) == 1
    sup_task = next(t for t in asyncio.all_tasks() if t.get_name() == "watch:cam-001")
    sup_task.cancel()
    await asyncio.gather(sup_task, return_exceptions=True)
    await until(lambda: not cam.sessions)
    assert cam.requests["TEARDOWN"] == 1


async def test_a_camera_without_our_login_is_an_auth_failure() -> None:
    farm = CameraFarm.build(1, ClipSpec("h264"), username="viewer", password="pw")
    async with farm:
        cam = farm["cam-001"]
        dev = CameraDevice(driver="rtsp", id=cam.id, kind="camera", zone="gate",
                           address=cam.url)
        sink = RecordingSink()
        sup = Supervisor(CameraDriver(dev, sink, timing=FAST),
                         backoff=Backoff(base_s=0.05, cap_s=0.1, patient_s=5.0),
                         sink=sink, family="camera.stream")
        task = asyncio.create_task(sup.run())
        try:
            await until(lambda: sink.kinds("cam-001") == ["camera.stream.down"])
            assert sup.failures == {"auth": 1}
            assert "wants a login and none is configured" in str(sink.events[0].data["reason"])
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_nobody_listening_is_unreachable() -> None:
    farm = CameraFarm.build(1, ClipSpec("h264"))
    async with farm:
        url = farm["cam-001"].url
    dev = CameraDevice(driver="rtsp", id="cam-001", kind="camera", zone="gate", address=url)
    sink = RecordingSink()
    sup = Supervisor(CameraDriver(dev, sink, timing=FAST),
                     backoff=Backoff(base_s=0.05, cap_s=0.1), sink=sink, family="camera.stream")
    task = asyncio.create_task(sup.run())
    try:
        await until(lambda: sup.restarts >= 2)
        assert sink.kinds("cam-001") == ["camera.stream.down"]
        assert sup.failures["unreachable"] >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_keep_alives_hold_the_session() -> None:
    farm = CameraFarm.build(2, ClipSpec("h264"))
    async with farm:
        farm["cam-002"].public = "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN"  # no GET_PARAMETER
        sink = RecordingSink()
        tasks = []
        for cam in farm.cameras.values():
            dev = CameraDevice(driver="rtsp", id=cam.id, kind="camera", zone="gate",
                               address=cam.url)
            timing = Timing(stall_s=1.0, tick_s=0.05, keepalive_s=0.2)
            tasks.append(asyncio.create_task(
                Supervisor(CameraDriver(dev, sink, timing=timing)).run()))
        try:
            await until(lambda: farm["cam-001"].requests.get("GET_PARAMETER", 0) >= 3)
            await until(lambda: farm["cam-002"].requests.get("OPTIONS", 0) >= 4)
            assert "GET_PARAMETER" not in farm["cam-002"].requests
            assert farm["cam-001"].requests["PLAY"] == 1  # one session all along
            assert farm["cam-002"].requests["PLAY"] == 1
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
