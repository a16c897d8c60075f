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
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from gateway.alerts import Alert, AlertSignal
from gateway.events import Event, Heartbeat, Reading, Severity

if TYPE_CHECKING:
    from gateway.rules import Verdict

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


# --- the rule module -------------------------------------------------------------------

LEAK = "water.leak"
NEVER_IDLES = "water.never_idles"
# A night is judged this long after 05:00, so its last minute has been heard.
JUDGE_AFTER_S = 120.0

_NOTHING: list[Verdict] = []


@dataclass(frozen=True, slots=True)
class WaterMeterSpec:
    """A water meter the rule watches: a main (leaks) or a sub-meter that should idle."""

    id: str
    zone: str
    role: Literal["main", "sub"]
    flow_metric: str = "flow_m3h"


@dataclass(frozen=True, slots=True)
class WaterParams:
    factor: float = 1.5
    margin_m3h: float = 0.5
    nights: int = 3
    minimum_history: int = 3
    idle_m3h: float = 0.01
    idle_nights: int = 3


class _Meter:
    __slots__ = ("active", "detector", "due", "judged", "minutes", "mnfs", "spec", "wanted")

    def __init__(self, spec: WaterMeterSpec, params: WaterParams) -> None:
        self.spec = spec
        self.detector = LeakDetector(params.factor, params.margin_m3h, params.nights,
                                     params.minimum_history)
        self.minutes: dict[int, list[float]] = {}  # epoch minute -> [sum, count], night only
        self.mnfs: deque[float] = deque(maxlen=max(params.idle_nights, BASELINE_NIGHTS))
        self.judged: date | None = None  # the last night judged
        self.wanted: NightVerdict | bool | None = None  # what the last judged night says
        self.active = False  # the alert as the book holds it
        self.due = math.inf  # when the earliest night held can be judged


class WaterRules:
    """Minimum night flow per water meter, judged once a night after 05:00 site time.

    Restart-safe: built with the night minutes the store holds (`history`, per meter
    (minute start, mean flow)), it replays every finished night, so the baseline and the
    nights above it are what they were before the restart."""

    name = "water"

    def __init__(self, params: WaterParams, meters: Iterable[WaterMeterSpec], *,
                 timezone: str = "Asia/Shanghai",
                 history: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                 now: float | None = None) -> None:
        self.params = params
        self.tz = ZoneInfo(timezone)
        self._meters: dict[tuple[str, str], _Meter] = {}
        self._by_id: dict[str, _Meter] = {}
        for spec in meters:
            m = _Meter(spec, params)
            self._meters[(spec.id, spec.flow_metric)] = m
            self._by_id[spec.id] = m
        for device, samples in (history or {}).items():
            meter = self._by_id.get(device)
            if meter is None:
                continue
            for t, flow in samples:
                self._add(meter, t, flow)
            if now is not None:
                self._judge(meter, now)

    def _night_of(self, t: float) -> date | None:
        local = datetime.fromtimestamp(t, self.tz)
        return local.date() if NIGHT_START <= local.time() < NIGHT_END else None

    def _add(self, meter: _Meter, t: float, flow: float) -> None:
        if self._night_of(t) is None or not math.isfinite(flow):
            return
        minute = int(t // 60)
        bucket = meter.minutes.get(minute)
        if bucket is None:
            bucket = meter.minutes[minute] = [0.0, 0.0]
            night = self._night_of(minute * 60.0)
            if night is not None:
                meter.due = min(meter.due, night_bounds(night, self.tz)[1] + JUDGE_AFTER_S)
        bucket[0] += flow
        bucket[1] += 1

    def restore(self, firing: Iterable[Alert]) -> None:
        for alert in firing:
            meter = self._by_id.get(alert.source)
            if meter is not None and alert.rule in (LEAK, NEVER_IDLES):
                meter.active = True

    def sources(self) -> Collection[str]:
        """Only its own meters' flow readings feed it."""
        return {source for source, _ in self._meters}

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        if type(item) is Reading:
            meter = self._meters.get((item.source, item.metric))
            if meter is not None:
                self._add(meter, item.time, item.value)
        return _NOTHING

    def tick(self, now: float) -> Sequence[Verdict]:
        out: list[Verdict] | None = None
        for meter in self._by_id.values():
            self._judge(meter, now)
            signal = self._signal(meter)
            if signal is not None:
                out = out or []
                out.append(signal)
        return out or _NOTHING

    def _judge(self, meter: _Meter, now: float) -> None:
        """Judge every night whose window ended (plus a grace) and has samples."""
        if now < meter.due:
            return
        meter.due = math.inf
        by_night: dict[date, list[tuple[float, float]]] = {}
        for minute in sorted(meter.minutes):
            night = self._night_of(minute * 60.0)
            if night is not None:
                total, count = meter.minutes[minute]
                by_night.setdefault(night, []).append((minute * 60.0, total / count))
        for night in sorted(by_night):
            _, end = night_bounds(night, self.tz)
            if now < end + JUDGE_AFTER_S:
                meter.due = end + JUDGE_AFTER_S
                break
            if meter.judged is None or night > meter.judged:
                mnf = minimum_night_flow(by_night[night], night, self.tz)
                if mnf is not None:
                    self._night(meter, night, mnf)
                meter.judged = night
            for minute in [m for m in meter.minutes if self._night_of(m * 60.0) == night]:
                del meter.minutes[minute]

    def _night(self, meter: _Meter, night: date, mnf: float) -> None:
        meter.mnfs.append(mnf)
        if meter.spec.role == "main":
            meter.wanted = meter.detector.add_night(night, mnf)
        else:
            meter.wanted = never_idles(list(meter.mnfs), idle_m3h=self.params.idle_m3h,
                                       nights=self.params.idle_nights)

    def _signal(self, meter: _Meter) -> AlertSignal | None:
        wanted = meter.wanted
        if wanted is None:
            return None
        leak = wanted.leak if isinstance(wanted, NightVerdict) else wanted
        if leak == meter.active:
            return None
        meter.active = leak
        spec = meter.spec
        mnf = meter.mnfs[-1]
        if spec.role == "main":
            assert isinstance(wanted, NightVerdict)
            base = wanted.baseline
            data: dict[str, Any] = {"night": wanted.night.isoformat(), "mnf_m3h": round(mnf, 3),
                                    "baseline_m3h": None if base is None else round(base, 3),
                                    "nights_above": wanted.nights_above}
            summary = (f"Water main {spec.id}: night flow {mnf:.2f} m3/h, baseline "
                       f"{base or 0:.2f} m3/h, {wanted.nights_above} nights above: a leak"
                       if leak else f"Water main {spec.id}: night flow back to {mnf:.2f} m3/h")
            return AlertSignal(LEAK, spec.id, spec.zone, Severity.MAJOR, leak, summary, data)
        nights = self.params.idle_nights
        summary = (f"Water sub-meter {spec.id} never idled for {nights} nights"
                   f" (night flow {mnf:.3f} m3/h)" if leak else
                   f"Water sub-meter {spec.id} idles again at night")
        return AlertSignal(NEVER_IDLES, spec.id, spec.zone, Severity.MINOR, leak, summary,
                           {"mnf_m3h": round(mnf, 4), "nights": nights})
