"""Picture health from one decoded keyframe at a time: figures measured with OpenCV on a
4x decimated luma plane, judged against the camera's own baseline. Several bad samples in
a row come before a verdict changes. Night (IR) pictures are dark but textured, so
darkness alone is never "black"."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_DECIMATE = 4
# The edge map that tells a moved camera is this many cells wide: coarse enough that
# grain, rain and a passer-by weigh little beside the walls, doors and kerbs.
_LAYOUT_WIDTH = 64


class Picture(enum.StrEnum):
    OK = "ok"
    BLACK = "black"  # dark and flat: a dead sensor, a cut video line
    BLANK = "blank"  # flat at any level: a grey "no video" screen, paint
    COVERED = "covered"  # the edges of the scene are gone: something over the lens
    BLURRED = "blurred"  # edges soft against its own baseline: defocus, dirt, fog
    FROZEN = "frozen"  # unchanged keyframes and collapsed P-frames: a hung encoder
    MOVED = "moved"  # a healthy picture of another view: turned, knocked or re-aimed


class Figures(NamedTuple):
    mean: float
    std: float
    sharpness: float  # variance of the Laplacian
    edges: float  # share of Canny edge pixels
    thumb: npt.NDArray[np.uint8]  # the decimated plane, for the frozen check
    layout: npt.NDArray[np.float32]  # coarse edge strength, for the moved check


def _opencv() -> Any:
    """OpenCV, on one thread. The planes measured here are small (480x270 at 1080p):
    its thread pool's hand-offs cost more CPU than they save on them (Canny 1.05 ms of
    CPU on two threads, 0.34 ms on one, measured). The setting is the process's; the
    gateway's other OpenCV work, the snapshots' JPEG encoding, runs on one thread anyway."""
    global _CV2
    if _CV2 is None:
        import cv2

        cv2.setNumThreads(1)
        _CV2 = cv2
    return _CV2


_CV2: Any = None


def measure(luma: npt.NDArray[np.uint8]) -> Figures:
    import numpy as np

    cv2 = _opencv()
    small = np.ascontiguousarray(luma[::_DECIMATE, ::_DECIMATE])
    mean, std = cv2.meanStdDev(small)
    # The Laplacian's variance, as its standard deviation squared: OpenCV's reduction
    # is a single pass, numpy's `var` takes three. Its values (within +-1020 for the
    # 3x3 kernel on 8-bit luma) are exact in 16 bits, which halves the work of floats.
    sharpness = float(cv2.meanStdDev(cv2.Laplacian(small, cv2.CV_16S))[1][0][0]) ** 2
    edges = float(np.count_nonzero(cv2.Canny(small, 50, 150))) / small.size
    return Figures(float(mean[0][0]), float(std[0][0]), sharpness, edges, small,
                   layout(small))


def layout(small: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The picture's coarse edge map: gradient magnitude of an area-averaged copy (the
    averaging takes out sensor grain, so an IR night picture keeps its day layout)."""
    import numpy as np

    cv2 = _opencv()
    h, w = small.shape[:2]
    cols = min(_LAYOUT_WIDTH, w)
    rows = max(1, round(h * cols / w))
    coarse = cv2.resize(small, (cols, rows), interpolation=cv2.INTER_AREA).astype("float32")
    edges = cv2.magnitude(cv2.Sobel(coarse, cv2.CV_32F, 1, 0),
                          cv2.Sobel(coarse, cv2.CV_32F, 0, 1))
    return np.asarray(edges, dtype=np.float32)


def likeness(reference: npt.NDArray[np.float32], now: npt.NDArray[np.float32]) -> float | None:
    """Correlation of two edge maps, -1..1: about 1 for the same view whatever its light
    (a darker or IR picture scales the edges, it does not move them), about 0 for another
    view. None when either holds no edges, or their sizes differ."""
    import numpy as np

    if reference.shape != now.shape:
        return None
    a = reference - reference.mean()
    b = now - now.mean()
    norm = float(np.sqrt(float(np.sum(a * a)) * float(np.sum(b * b))))
    if norm < 1e-6:
        return None
    return float(np.sum(a * b)) / norm


@dataclass(frozen=True, slots=True)
class Thresholds:
    black_mean: float = 28.0  # 8-bit luma; video black is 16
    flat_std: float = 6.0  # below this the picture holds nothing
    # Against the camera's own baseline (the median of its first good samples):
    covered_edges: float = 0.1
    blurred_sharpness: float = 0.25
    # Two keyframes this close (mean absolute difference of the decimated planes; a
    # re-encoded still picture differs by its quantisation noise, ~3 levels) ...
    frozen_diff: float = 6.0
    # ... while the P-frames shrank to this share of their usual size: frozen.
    frozen_p_share: float = 0.2
    # Edge maps correlating under this with the reference are another view: moved. The
    # same view reads 0.8-1.0 by day, by IR night and with people passing; another ~0.
    moved_likeness: float = 0.5
    # Samples this alike refresh the reference, a little each time (`reference_blend`),
    # so dusk, weather and the seasons move it slowly and never read as moved.
    refresh_likeness: float = 0.7
    reference_blend: float = 0.05
    bad_in_a_row: int = 3
    good_in_a_row: int = 2
    baseline_samples: int = 3


def classify(f: Figures, previous: Figures | None, base_sharp: float | None,
             base_edges: float | None, p_share: float | None, t: Thresholds,
             like: float | None = None) -> Picture:
    """One sample's verdict. `p_share`: recent P-frame size over its usual size; `like`:
    the edge map's likeness to the camera's reference (None while it has none)."""
    import numpy as np

    if f.std < t.flat_std:
        return Picture.BLACK if f.mean < t.black_mean else Picture.BLANK
    if base_edges is not None and f.edges < t.covered_edges * base_edges:
        return Picture.COVERED
    if base_sharp is not None and f.sharpness < t.blurred_sharpness * base_sharp:
        return Picture.BLURRED
    if like is not None and like < t.moved_likeness:
        return Picture.MOVED
    if (previous is not None and p_share is not None and p_share < t.frozen_p_share
            and previous.thumb.shape == f.thumb.shape):
        diff = float(np.mean(np.abs(f.thumb.astype(np.int16) - previous.thumb)))
        if diff < t.frozen_diff:
            return Picture.FROZEN
    return Picture.OK


class PictureJudge:
    """One camera's picture state: a sample changes it only after `bad_in_a_row` samples
    with the same bad verdict (or `good_in_a_row` good ones to clear).

    The moved check's reference is the mean edge map of the first `baseline_samples`
    good pictures in a row that are alike (a camera still turning starts them over),
    then blended slowly with every good picture that is alike."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.t = thresholds or Thresholds()
        self.state = Picture.OK
        self._previous: Figures | None = None
        self._sharp: deque[float] = deque(maxlen=self.t.baseline_samples)
        self._edges: deque[float] = deque(maxlen=self.t.baseline_samples)
        self._p_sizes: deque[float] = deque(maxlen=self.t.baseline_samples)
        self._run: tuple[Picture, int] = (Picture.OK, 0)
        self.last: Picture = Picture.OK
        self.reference: npt.NDArray[np.float32] | None = None
        self._candidates: list[npt.NDArray[np.float32]] = []
        self.likeness: float | None = None  # the last sample's, against the reference

    def sample(self, f: Figures, p_median: float | None = None) -> Picture | None:
        """The new state when this sample changes it, else None. `p_median`: the median
        size of the stream's recent P-frames, in bytes."""
        full = len(self._sharp) == self._sharp.maxlen
        p_share = None
        if p_median is not None and len(self._p_sizes) == self._p_sizes.maxlen:
            p_share = p_median / max(median(self._p_sizes), 1.0)
        ref = self.reference
        like = self.likeness = likeness(ref, f.layout) if ref is not None else None
        verdict = classify(f, self._previous, median(self._sharp) if full else None,
                           median(self._edges) if full else None, p_share, self.t, like)
        self._previous = f
        self.last = verdict
        if verdict is Picture.OK:
            self._learn(f.layout, like)
            if not full:
                self._sharp.append(f.sharpness)  # the baseline: its first good pictures
                self._edges.append(f.edges)
                if p_median is not None:
                    self._p_sizes.append(p_median)
        seen, count = self._run
        count = count + 1 if verdict is seen else 1
        self._run = (verdict, count)
        need = self.t.good_in_a_row if verdict is Picture.OK else self.t.bad_in_a_row
        if verdict is not self.state and count >= need:
            self.state = verdict
            return verdict
        return None

    def settled(self) -> bool:
        """Whether the samples in a row back the current state (a judge just started
        is OK by assumption, not yet by `good_in_a_row` good pictures)."""
        seen, count = self._run
        need = self.t.good_in_a_row if seen is Picture.OK else self.t.bad_in_a_row
        return seen is self.state and count >= need

    def _learn(self, edges: npt.NDArray[np.float32], like: float | None) -> None:
        ref = self.reference
        if ref is not None and ref.shape != edges.shape:  # the stream's size changed
            self.reference, ref = None, None
            self._candidates = []
        if ref is None:
            first = self._candidates[0] if self._candidates else None
            alike = likeness(first, edges) if first is not None else None
            if alike is None or alike < self.t.refresh_likeness:
                self._candidates = []  # not steady yet: start over from this picture
            self._candidates.append(edges)
            if len(self._candidates) >= self.t.baseline_samples:
                self.reference = _mean(self._candidates)
                self._candidates = []
        elif like is not None and like >= self.t.refresh_likeness:
            blend = self.t.reference_blend
            self.reference = ref * (1.0 - blend) + edges * blend

    def retake_reference(self) -> Picture | None:
        """The operator says the camera looks where it should now: the last picture is the
        reference, if it was a healthy one (else the next steady pictures are). Clears a
        moved state at once: the new state, or None when it did not change."""
        last = self._previous
        self.reference = None
        self._candidates = []
        if last is not None and self.last in (Picture.OK, Picture.MOVED):
            self.reference = last.layout
            self.likeness = 1.0
        if self.state is Picture.MOVED:
            self.state = self.last = Picture.OK
            self._run = (Picture.OK, 0)
            return Picture.OK
        if self.last is Picture.MOVED:
            self.last = Picture.OK
            self._run = (Picture.OK, 0)
        return None


def _mean(maps: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    import numpy as np

    return np.asarray(np.mean(np.stack(maps), axis=0), dtype=np.float32)
