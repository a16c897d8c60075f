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
from drivers.rtsp.picture import (
    Figures,
    Picture,
    PictureJudge,
    Thresholds,
    classify,
    likeness,
    measure,
)
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


def test_a_new_judge_is_ok_by_assumption_until_good_pictures_back_it() -> None:
    # The driver says the first settled ok once (a kept alert clears on it): settled()
    # tells it when, as the judge itself only speaks on a change.
    scene, black = keyframe("h264", "scene", 0), drawn(16, 0.5)
    judge = PictureJudge(Thresholds(bad_in_a_row=3, good_in_a_row=2))
    assert not judge.settled()
    assert judge.sample(scene) is None and not judge.settled()
    assert judge.sample(scene) is None and judge.settled()
    assert judge.sample(black) is None and not judge.settled()


async def until(check: Callable[[], bool], deadline_s: float = 40.0) -> None:
    async with asyncio.timeout(deadline_s):
        while not check():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("codec", ["h264", "h265"])
async def test_each_picture_fault_is_told_once_and_cleared(codec: str) -> None:
    faults = {"cam-001": "black", "cam-002": "frozen", "cam-003": "blurred",
              "cam-004": "covered", "cam-005": "night", "cam-006": "moved"}
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
            # The baseline and the reference: three good samples each. The first settled
            # ok is said once: a picture alert kept from before a restart clears on it.
            await asyncio.sleep(4.5)
            for cam, picture in faults.items():
                assert await farm.control(f"{cam} picture {picture}") == "ok"

            def images(cam: str) -> list[str]:
                return [k for k in sink.kinds(cam) if k.startswith("camera.image.")]

            for cam, picture in faults.items():
                if picture != "night":
                    await until(lambda cam=cam, p=picture: images(cam) == [
                        "camera.image.ok", f"camera.image.{p}"])
            for cam in faults:
                assert await farm.control(f"{cam} picture scene") == "ok"
            for cam, picture in faults.items():
                if picture != "night":
                    await until(lambda cam=cam, p=picture: images(cam) == [
                        "camera.image.ok", f"camera.image.{p}", "camera.image.ok"])
            # Night: nothing to tell but the first word (ok since the gateway started).
            assert images("cam-005") == ["camera.image.ok"]
            assert sink.rejections == {}
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# A moved camera: the coarse edge map against the camera's reference.

def view(shift: tuple[float, float] = (0.0, 0.0), turn: float = 0.0, gain: float = 1.0,
         offset: float = 0.0, noise: float = 4.0, walker: int | None = None,
         other: bool = False, seed: int = 5, size: tuple[int, int] = (360, 640)) -> Figures:
    """A drawn fixed view: a wall with windows, a door and a kerb, seen with a given light
    (gain, offset, sensor noise), maybe a person walking by, maybe turned or shifted."""
    import cv2

    h, w = size
    y = np.full((h, w), 120.0, dtype=np.float32)
    boxes = ([(0.1, 0.1, 0.2, 0.3), (0.3, 0.1, 0.4, 0.3), (0.6, 0.1, 0.7, 0.3),
              (0.1, 0.4, 0.2, 0.6), (0.6, 0.4, 0.7, 0.6), (0.45, 0.2, 0.53, 0.75)]
             if not other else
             [(0.05, 0.5, 0.5, 0.6), (0.7, 0.05, 0.95, 0.9), (0.2, 0.1, 0.3, 0.2)])
    for x0, y0, x1, y1 in boxes:
        y[int(y0 * h): int(y1 * h), int(x0 * w): int(x1 * w)] = 40.0
    y[int(0.8 * h):, :] = 190.0  # the pavement below the kerb
    if walker is not None:  # a person crossing: a dark upright shape
        x = int(walker * w / 10) % w
        y[int(0.45 * h): int(0.85 * h), x: x + w // 30] = 20.0
    if shift != (0.0, 0.0) or turn:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), turn, 1.0)
        m[0, 2] += shift[0] * w
        m[1, 2] += shift[1] * h
        y = cv2.warpAffine(y, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    rng = np.random.default_rng(seed)
    y = y * gain + offset + rng.normal(0, noise, size=(h, w))
    return measure(np.clip(y, 0, 255).astype(np.uint8))


REFERENCE = view()


@pytest.mark.parametrize(("figures", "verdict"), [
    (view(seed=6), Picture.OK),  # the same view, another moment's grain
    (view(gain=0.45, offset=5), Picture.OK),  # dusk
    (view(gain=0.3, offset=15, noise=9), Picture.OK),  # IR night: dark, flat, grainy
    (view(gain=1.4, offset=-20), Picture.OK),  # low sun, glare on the wall
    (view(walker=3), Picture.OK),  # someone walking past
    (view(noise=14), Picture.OK),  # rain, snow
    (view(shift=(0.12, 0.0)), Picture.MOVED),  # knocked sideways
    (view(shift=(0.0, 0.15)), Picture.MOVED),  # drooped on its bracket
    (view(turn=8.0), Picture.MOVED),  # twisted
    (view(other=True), Picture.MOVED),  # re-aimed at another view
])
def test_a_moved_camera_is_told_by_its_edge_map(figures: Figures, verdict: Picture) -> None:
    like = likeness(REFERENCE.layout, figures.layout)
    got = classify(figures, None, REFERENCE.sharpness, REFERENCE.edges, None, Thresholds(),
                   like)
    assert got is verdict, like


@pytest.mark.parametrize("codec", ["h264", "h265"])
@pytest.mark.parametrize(("content", "verdict"), [
    ("scene", Picture.OK), ("night", Picture.OK), ("moved", Picture.MOVED),
])
def test_the_simulators_moved_camera(codec: str, content: str, verdict: Picture) -> None:
    judge = PictureJudge()
    for k in (0, 25, 0):
        assert judge.sample(keyframe(codec, "scene", k)) is None
    assert judge.reference is not None
    f = keyframe(codec, content, 25)
    base = keyframe(codec, "scene", 0)
    got = classify(f, None, base.sharpness, base.edges, None, Thresholds(),
                   likeness(judge.reference, f.layout))
    assert got is verdict


def test_no_edges_no_likeness() -> None:
    flat = drawn(128, 0.0)
    assert likeness(flat.layout, REFERENCE.layout) is None
    # The map's size follows the aspect, not the resolution: a smaller sub-stream of the
    # same view is alike, a picture of another shape cannot be compared.
    assert likeness(REFERENCE.layout, view(size=(180, 320)).layout) > 0.9
    assert likeness(REFERENCE.layout, view(size=(240, 320)).layout) is None


def test_the_reference_is_taken_once_the_picture_is_steady() -> None:
    judge = PictureJudge()
    # A camera still turning into place: no two pictures alike, no reference yet.
    for f in (view(turn=20), view(turn=10), view()):
        judge.sample(f)
    assert judge.reference is None
    judge.sample(view(seed=7))
    judge.sample(view(seed=8))
    assert judge.reference is not None
    assert likeness(judge.reference, REFERENCE.layout) == pytest.approx(1.0, abs=0.02)


def test_moved_after_several_samples_cleared_when_it_returns() -> None:
    judge = PictureJudge()
    moved = view(shift=(0.15, 0.05))
    said = [judge.sample(f) for f in
            [view(seed=1), view(seed=2), view(seed=3),  # the reference
             moved, moved, view(), moved, moved, moved, moved, view(), view()]]
    assert said == [None, None, None, None, None, None, None, None, Picture.MOVED, None,
                    None, Picture.OK]


def test_the_operator_retakes_the_reference() -> None:
    judge = PictureJudge()
    for n in range(3):
        judge.sample(view(seed=n))
    aimed = view(other=True)
    said = [judge.sample(aimed) for _ in range(3)]
    assert said == [None, None, Picture.MOVED]
    # The new aim is right: the last picture becomes the reference, the state clears.
    assert judge.retake_reference() is Picture.OK
    assert [judge.sample(view(other=True, seed=n)) for n in range(4)] == [None] * 4
    assert judge.state is Picture.OK
    # And the old view is now the moved one.
    assert [judge.sample(REFERENCE) for _ in range(3)] == [None, None, Picture.MOVED]
    # Retaking while the picture is black keeps black and learns from the next pictures.
    for _ in range(3):
        judge.sample(drawn(16, 0.5))
    assert judge.state is Picture.BLACK
    assert judge.retake_reference() is None
    assert judge.reference is None and judge.state is Picture.BLACK


def test_a_slow_change_moves_the_reference_a_sudden_one_is_moved() -> None:
    # Over hours the view changes bit by bit (a tree grows, scaffolding goes up, the
    # light turns): each sample is alike its reference, which follows.
    judge = PictureJudge()
    a, b = view(), view(other=True)
    for n in range(3):
        judge.sample(view(seed=n))
    slow = []
    for n in range(200):
        share = min(1.0, n / 150)
        mixed = a.layout * (1 - share) + b.layout * share
        slow.append(judge.sample(a._replace(layout=mixed.astype(np.float32))))
    assert set(slow) == {None} and judge.state is Picture.OK
    assert likeness(judge.reference, b.layout) > 0.9
    # The same change at once is a moved camera.
    judge = PictureJudge()
    for n in range(3):
        judge.sample(view(seed=n))
    assert [judge.sample(b) for _ in range(3)] == [None, None, Picture.MOVED]


async def test_a_retaken_reference_says_ok_so_a_kept_moved_alert_clears() -> None:
    # After a restart the gateway still holds a moved alert, while the new monitor took
    # its reference from the pictures since: the operator's re-take says `ok` anyway.
    sink = RecordingSink()
    dev = CameraDevice(driver="rtsp", id="cam-001", kind="camera", zone="gate",
                       address="rtsp://127.0.0.1:9/x")
    driver = CameraDriver(dev, sink)
    for n in range(3):
        driver.picture.sample(view(seed=n))
    assert await driver.retake_reference("Wang via api", "re-aimed") is Picture.OK
    [event] = sink.events
    assert event.kind == "camera.image.ok"
    assert event.data == {"reference": "retaken", "who": "Wang via api", "why": "re-aimed"}
    # A black picture stays black: nothing is said.
    for _ in range(3):
        driver.picture.sample(drawn(16, 0.5))
    assert await driver.retake_reference("Wang via api", "re-aimed") is Picture.BLACK
    assert len(sink.events) == 1
