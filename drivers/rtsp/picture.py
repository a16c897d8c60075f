"""Picture health from one decoded keyframe at a time: figures measured with OpenCV on a
4x decimated luma plane, judged against the camera's own baseline. Several bad samples in
a row come before a verdict changes. Night (IR) pictures are dark but textured, so
darkness alone is never "black"."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_DECIMATE = 4


class Picture(enum.StrEnum):
    OK = "ok"
    BLACK = "black"  # dark and flat: a dead sensor, a cut video line
    BLANK = "blank"  # flat at any level: a grey "no video" screen, paint
    COVERED = "covered"  # the edges of the scene are gone: something over the lens
    BLURRED = "blurred"  # edges soft against its own baseline: defocus, dirt, fog
    FROZEN = "frozen"  # unchanged keyframes and collapsed P-frames: a hung encoder


class Figures(NamedTuple):
    mean: float
    std: float
    sharpness: float  # variance of the Laplacian
    edges: float  # share of Canny edge pixels
    thumb: npt.NDArray[np.uint8]  # the decimated plane, for the frozen check


def measure(luma: npt.NDArray[np.uint8]) -> Figures:
    import cv2
    import numpy as np

    small = np.ascontiguousarray(luma[::_DECIMATE, ::_DECIMATE])
    mean, std = cv2.meanStdDev(small)
    sharpness = float(cv2.Laplacian(small, cv2.CV_32F).var())
    edges = float(np.count_nonzero(cv2.Canny(small, 50, 150))) / small.size
    return Figures(float(mean[0][0]), float(std[0][0]), sharpness, edges, small)


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
    bad_in_a_row: int = 3
    good_in_a_row: int = 2
    baseline_samples: int = 3


def classify(f: Figures, previous: Figures | None, base_sharp: float | None,
             base_edges: float | None, p_share: float | None, t: Thresholds) -> Picture:
    """One sample's verdict. `p_share`: recent P-frame size over its usual size."""
    import numpy as np

    if f.std < t.flat_std:
        return Picture.BLACK if f.mean < t.black_mean else Picture.BLANK
    if base_edges is not None and f.edges < t.covered_edges * base_edges:
        return Picture.COVERED
    if base_sharp is not None and f.sharpness < t.blurred_sharpness * base_sharp:
        return Picture.BLURRED
    if (previous is not None and p_share is not None and p_share < t.frozen_p_share
            and previous.thumb.shape == f.thumb.shape):
        diff = float(np.mean(np.abs(f.thumb.astype(np.int16) - previous.thumb)))
        if diff < t.frozen_diff:
            return Picture.FROZEN
    return Picture.OK


class PictureJudge:
    """One camera's picture state: a sample changes it only after `bad_in_a_row` samples
    with the same bad verdict (or `good_in_a_row` good ones to clear)."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.t = thresholds or Thresholds()
        self.state = Picture.OK
        self._previous: Figures | None = None
        self._sharp: deque[float] = deque(maxlen=self.t.baseline_samples)
        self._edges: deque[float] = deque(maxlen=self.t.baseline_samples)
        self._p_sizes: deque[float] = deque(maxlen=self.t.baseline_samples)
        self._run: tuple[Picture, int] = (Picture.OK, 0)
        self.last: Picture = Picture.OK

    def sample(self, f: Figures, p_median: float | None = None) -> Picture | None:
        """The new state when this sample changes it, else None. `p_median`: the median
        size of the stream's recent P-frames, in bytes."""
        full = len(self._sharp) == self._sharp.maxlen
        p_share = None
        if p_median is not None and len(self._p_sizes) == self._p_sizes.maxlen:
            p_share = p_median / max(median(self._p_sizes), 1.0)
        verdict = classify(f, self._previous, median(self._sharp) if full else None,
                           median(self._edges) if full else None, p_share, self.t)
        self._previous = f
        self.last = verdict
        if verdict is Picture.OK and not full:
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
