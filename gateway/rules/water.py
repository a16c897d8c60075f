"""Leak detection on the water mains by minimum night flow (MNF). Pure; time is passed in.

Per meter and night: MNF = the lowest rolling 60-minute mean flow between 02:00 and 05:00
site time (Asia/Shanghai). The baseline is the 20th percentile of the last 7 nights that
were not themselves above it, so a leak that goes on does not become the new normal. A
leak is raised after N nights in a row whose MNF exceeds the baseline by both a factor
and an absolute margin. A sub-meter that should idle at night is flagged when its MNF has
not reached (near) zero for N nights.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NIGHT_START = time(2, 0)
NIGHT_END = time(5, 0)
WINDOW_S = 3600.0
BASELINE_NIGHTS = 7
PERCENTILE = 0.20


def night_bounds(night: date, tz: ZoneInfo) -> tuple[float, float]:
    """The epoch seconds of 02:00 and 05:00 site time on `night` (the morning's date)."""
    start = datetime.combine(night, NIGHT_START, tz).timestamp()
    end = datetime.combine(night, NIGHT_END, tz).timestamp()
    return start, end


def minimum_night_flow(samples: Sequence[tuple[float, float]], night: date,
                       tz: ZoneInfo) -> float | None:
    """The lowest mean over any 60 minutes inside the night window, from (time, m3/h)
    samples sorted by time; None when the night has no full hour of samples."""
    start, end = night_bounds(night, tz)
    times = [t for t, _ in samples]
    lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
    window = samples[lo:hi]
    best: float | None = None
    total, first = 0.0, 0
    for i, (t, flow) in enumerate(window):
        total += flow
        while window[first][0] <= t - WINDOW_S:
            total -= window[first][1]
            first += 1
        if t - start >= WINDOW_S - 1e-9:
            mean = total / (i - first + 1)
            best = mean if best is None else min(best, mean)
    return best


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class NightVerdict:
    night: date
    mnf: float
    baseline: float | None
    above: bool
    nights_above: int
    leak: bool


@dataclass
class LeakDetector:
    factor: float = 1.5
    margin_m3h: float = 0.5
    nights_required: int = 3
    minimum_history: int = 3  # nights of baseline needed before anything is judged
    history: deque[float] = field(default_factory=lambda: deque(maxlen=BASELINE_NIGHTS))
    nights_above: int = 0

    def baseline(self) -> float | None:
        if len(self.history) < self.minimum_history:
            return None
        return percentile(list(self.history), PERCENTILE)

    def add_night(self, night: date, mnf: float) -> NightVerdict:
        base = self.baseline()
        above = base is not None and mnf > base * self.factor and mnf - base > self.margin_m3h
        if above:
            self.nights_above += 1
        else:
            self.nights_above = 0
            self.history.append(mnf)
        leak = self.nights_above >= self.nights_required
        return NightVerdict(night, mnf, base, above, self.nights_above, leak)


def never_idles(mnfs: Sequence[float], *, idle_m3h: float = 0.01, nights: int = 3) -> bool:
    """A sub-meter that should idle at night whose last `nights` MNFs all stayed above
    `idle_m3h`: a tap, a cistern or a pipe running all night."""
    recent = list(mnfs)[-nights:]
    return len(recent) == nights and all(m > idle_m3h for m in recent)


def nights_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
