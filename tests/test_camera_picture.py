"""Picture health: figures of decoded keyframes judged against the camera's own baseline,
from tables of pictures (the simulator's contents, decoded; and drawn ones), and each
picture fault of a simulated camera told once as `camera.image.<state>` after several
samples in a row, cleared when the picture is back; a night picture tells nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from drivers.rtsp.config import CameraDevice
from drivers.rtsp.driver import CameraDriver, Timing
from drivers.rtsp.keyframe import KeyframeDecoder
from drivers.rtsp.picture import Figures, Picture, PictureJudge, Thresholds, classify, measure
from drivers.rtsp.rtp import Codec
from gateway.supervisor import Backoff, Supervisor
from simulators.camera_clips import ClipSpec, load_clip
from simulators.cameras import CameraFarm
from tests.camera_sink import RecordingSink

DECODER = KeyframeDecoder()


def keyframe(codec: str, content: str, k: int = 0) -> Figures:
    clip = load_clip(ClipSpec(codec, content=content))
    au = b"".join(b"\x00\x00\x00\x01" + nal for nal in clip.frames[k])
    luma = DECODER.luma(Codec.H264 if codec == "h264" else Codec.H265, au)
    assert luma is not None
    return measure(luma)


def p_median(codec: str, content: str) -> float:
    clip = load_clip(ClipSpec(codec, content=content))
    sizes = sorted(sum(len(n) for n in f) for i, f in enumerate(clip.frames) if i % 25)
    return float(sizes[len(sizes) // 2])


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize(("content", "verdict"), [
    ("scene", Picture.OK), ("night", Picture.OK), ("black", Picture.BLACK),
    ("covered", Picture.COVERED), ("blurred", Picture.BLURRED), ("frozen", Picture.FROZEN),
])
def test_a_keyframe_is_judged_against_the_cameras_baseline(codec: str, content: str,
                                                           verdict: Picture) -> None:
    base = keyframe(codec, "scene", 0)
    share = p_median(codec, content) / p_median(codec, "scene")
    got = classify(keyframe(codec, content, 25), keyframe(codec, content, 0),
                   base.sharpness, base.edges, share, Thresholds())
    assert got is verdict


def drawn(mean: float, noise: float, size: tuple[int, int] = (180, 320)) -> Figures:
    rng = np.random.default_rng(3)
    y = np.clip(mean + rng.normal(0, noise, size=size), 0, 255).astype(np.uint8)
    return measure(y)


@pytest.mark.parametrize(("figures", "verdict"), [
    (drawn(16, 0.5), Picture.BLACK),
    (drawn(128, 1.0), Picture.BLANK),  # a grey "no video" screen
    (drawn(235, 1.0), Picture.BLANK),  # glare, paint
    (drawn(35, 14.0), Picture.OK),  # a dark, grainy night picture is not black
])
def test_flat_pictures(figures: Figures, verdict: Picture) -> None:
    assert classify(figures, None, None, None, None, Thresholds()) is verdict


def test_a_static_scene_with_busy_p_frames_is_not_frozen() -> None:
    still = keyframe("h264", "frozen", 0)
    assert classify(still, still, still.sharpness, still.edges, 1.0, Thresholds()) is (
        Picture.OK)
    assert classify(still, still, still.sharpness, still.edges, 0.05, Thresholds()) is (
        Picture.FROZEN)


def test_several_bad_samples_in_a_row_come_before_a_verdict() -> None:
    scene, black = keyframe("h264", "scene", 0), drawn(16, 0.5)
    judge = PictureJudge(Thresholds(bad_in_a_row=3, good_in_a_row=2))
    said = [judge.sample(f) for f in
            [scene, scene, scene, black, black, scene, black, black, black, black, scene,
             scene]]
    assert said == [None, None, None, None, None, None, None, None, Picture.BLACK, None,
                    None, Picture.OK]


async def until(check: Callable[[], bool], deadline_s: float = 40.0) -> None:
    async with asyncio.timeout(deadline_s):
        while not check():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("codec", ["h264", "h265"])
async def test_each_picture_fault_is_told_once_and_cleared(codec: str) -> None:
    faults = {"cam-001": "black", "cam-002": "frozen", "cam-003": "blurred",
              "cam-004": "covered", "cam-005": "night"}
    farm = CameraFarm.build(len(faults), ClipSpec(codec))
    sink = RecordingSink()
    async with farm:
        tasks = []
        for cam in farm.cameras.values():
            dev = CameraDevice(driver="rtsp", id=cam.id, kind="camera", zone="gate",
                               address=cam.url, picture_every_s=1.0)
            sup = Supervisor(CameraDriver(dev, sink, timing=Timing(tick_s=0.05)),
                             backoff=Backoff(base_s=0.05), sink=sink, family="camera.stream")
            tasks.append(asyncio.create_task(sup.run()))
        try:
            # The baseline: three good samples each.
            await asyncio.sleep(4.5)
            for cam, picture in faults.items():
                assert await farm.control(f"{cam} picture {picture}") == "ok"

            def images(cam: str) -> list[str]:
                return [k for k in sink.kinds(cam) if k.startswith("camera.image.")]

            for cam, picture in faults.items():
                if picture != "night":
                    await until(lambda cam=cam, p=picture: images(cam) == [f"camera.image.{p}"])
            for cam in faults:
                assert await farm.control(f"{cam} picture scene") == "ok"
            for cam, picture in faults.items():
                if picture != "night":
                    await until(lambda cam=cam, p=picture: images(cam) == [
                        f"camera.image.{p}", "camera.image.ok"])
            assert images("cam-005") == []  # night: nothing to tell
            assert sink.rejections == {}
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
