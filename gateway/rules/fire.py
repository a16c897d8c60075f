"""Fire rules: heat detector readings, flags and silence -> alert signals (static
threshold, rate of rise, the detector's own alarm and fault, low battery). Silence is
not fire's business: `gateway.rules.presence` handles it for every device family."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.errors import ConfigError
from gateway.events import Event, Heartbeat, Reading, Severity

ALARM = "fire.alarm"
STATIC = "fire.static"
ROR = "fire.ror"
PREWARN = "fire.prewarn"
FAULT = "fire.fault"
BATTERY_LOW = "fire.battery_low"

# The slope is taken between samples of the smoothed series, about twelve per window
# (one per 5 s of a minute): enough to follow a fire, few enough to keep a tiny ring.
_SAMPLES_PER_WINDOW = 12
# With less than half a window of history a +-0.5 K wobble already reads as ~2 K/min.
_MIN_SPAN_FRACTION = 0.5
# A cell at the limit reads a little higher when warm or idle; without a margin the
# alert would flap with the day's temperature.
_BATTERY_CLEAR_MARGIN_PCT = 5.0

# Returned whenever nothing changed, so the hot path allocates no list. Never mutate it.
_NOTHING: list[AlertSignal] = []


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    id: str
    zone: str
    detector_class: str  # EN 54-5 class and suffix: "A1R", "A2S", "BS", "C", ...
    heartbeat_s: float


@dataclass(frozen=True, slots=True)
class FireParams:
    static_threshold_c: Mapping[str, float]  # by class without suffix: "A1", "A2", "B", "C"
    ror_rise_k_per_min: float = 4.0
    ror_threshold_c: float = 46.0
    ror_window_s: float = 60.0
    smoothing_alpha: float = 0.3
    clear_hysteresis_k: float = 3.0
    low_battery_pct: float = 20
    prewarn_margin_k: float = 10.0  # pre-warning this far below ror_threshold_c


def detector_flags(firing: Iterable[Alert]) -> dict[str, Any]:
    """What the heat-detector codec must remember of one detector, from its firing
    alerts: the flags its last committed report carried."""
    rules = {a.rule: a for a in firing if a.state is AlertState.FIRING}
    fault = rules.get(FAULT)
    code = fault.data.get("code") if fault is not None else None
    return {"alarm": ALARM in rules, "fault": code if isinstance(code, str) else None}


def class_parts(detector_class: str) -> tuple[str, str]:
    """Split "A1R" into ("A1", "R"): the static class and its suffix (R, S or none)."""
    text = detector_class.strip().upper()
    if len(text) > 1 and text[-1] in "RS":
        return text[:-1], text[-1]
    return text, ""


class _Detector:
    """What the rules remember about one detector between items."""

    __slots__ = (
        "alarm",
        "battery_low",
        "fault",
        "fault_code",
        "prewarn",
        "rate_of_rise",
        "rise",
        "ror",
        "samples",
        "smoothed",
        "smoothed_t",
        "spec",
        "static",
        "static_c",
        "static_clear_c",
    )

    def __init__(self, spec: DetectorSpec, params: FireParams) -> None:
        static_class, suffix = class_parts(spec.detector_class)
        try:
            self.static_c = float(params.static_threshold_c[static_class])
        except KeyError:
            known = ", ".join(sorted(params.static_threshold_c))
            raise ConfigError(
                f"detector {spec.id}: class {spec.detector_class!r} has no static threshold"
                f" (thresholds exist for {known})"
            ) from None
        self.spec = spec
        self.static_clear_c = self.static_c - params.clear_hysteresis_k
        self.rate_of_rise = suffix == "R"
        self.smoothed: float | None = None
        self.smoothed_t = 0.0
        self.samples: deque[tuple[float, float]] = deque(maxlen=_SAMPLES_PER_WINDOW + 4)
        self.rise = 0.0  # K/min of the smoothed series; 0 until enough history
        self.fault_code = ""
        self.alarm = self.static = self.ror = self.prewarn = False
        self.fault = self.battery_low = False


def _add(out: list[AlertSignal], signal: AlertSignal) -> list[AlertSignal]:
    if out is _NOTHING:
        return [signal]
    out.append(signal)
    return out


class FireRules:
    """The fire rules for a set of detectors; each rule signals only on a transition."""

    name = "fire"

    def __init__(self, params: FireParams, detectors: Iterable[DetectorSpec]) -> None:
        self._params = params
        self._detectors: dict[str, _Detector] = {}
        for spec in detectors:
            if spec.id in self._detectors:
                raise ConfigError(f"detector {spec.id}: listed twice")
            self._detectors[spec.id] = _Detector(spec, params)
        self._sample_every_s = params.ror_window_s / _SAMPLES_PER_WINDOW
        self._keep_per_s = 1.0 - params.smoothing_alpha
        self._min_span_s = params.ror_window_s * _MIN_SPAN_FRACTION
        self._calm_rise = params.ror_rise_k_per_min / 2
        self._ror_clear_c = params.ror_threshold_c - params.clear_hysteresis_k
        self._prewarn_c = params.ror_threshold_c - params.prewarn_margin_k
        self._prewarn_clear_c = self._prewarn_c - params.clear_hysteresis_k

    def restore(self, firing: Iterable[Alert]) -> None:
        """Take over alerts still firing from before a restart, so their clears are seen."""
        for alert in firing:
            d = self._detectors.get(alert.source)
            if d is None or alert.state is not AlertState.FIRING:
                continue
            rule = alert.rule
            if rule == ALARM:
                d.alarm = True
            elif rule == STATIC:
                d.static = True
            elif rule == ROR:
                d.ror = True
            elif rule == PREWARN:
                d.prewarn = True
            elif rule == FAULT:
                d.fault = True
                d.fault_code = str(alert.data.get("code", ""))
            elif rule == BATTERY_LOW:
                d.battery_low = True

    def sources(self) -> Collection[str]:
        """Only its own heat detectors' items can make it speak."""
        return self._detectors.keys()

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> list[AlertSignal]:
        """Signals caused by one item. An empty result is shared: read it, never mutate it."""
        d = self._detectors.get(item.source)
        if d is None:
            return _NOTHING
        out = _NOTHING
        if isinstance(item, Reading):
            if item.metric == "temperature":
                out = self._temperature(d, item.value, item.time, out)
            elif item.metric == "battery":
                out = self._battery(d, item.value, out)
        elif isinstance(item, Event):
            out = self._event(d, item, out)
        return out

    def tick(self, now: float) -> list[AlertSignal]:
        """Nothing in the fire rules is driven by time alone."""
        return _NOTHING

    def _temperature(
        self, d: _Detector, value: float, t: float, out: list[AlertSignal]
    ) -> list[AlertSignal]:
        s = d.smoothed
        if s is None:
            s = value
        else:
            # The weight is per second since the last reading, so a detector reporting
            # every 30 s is not held back by its own history: at 1 s per report this is
            # the plain EWMA, at 30 s a new reading counts almost fully.
            dt = max(0.0, t - d.smoothed_t)
            s += (1.0 - self._keep_per_s ** dt) * (value - s)
        d.smoothed = s
        d.smoothed_t = t
        if d.static:
            if s < d.static_clear_c:
                d.static = False
                out = _add(out, self._static_signal(d, s, active=False))
        elif s >= d.static_c:
            d.static = True
            out = _add(out, self._static_signal(d, s, active=True))
        if d.rate_of_rise:
            out = self._rate_of_rise(d, s, t, out)
        return out

    def _rate_of_rise(
        self, d: _Detector, s: float, t: float, out: list[AlertSignal]
    ) -> list[AlertSignal]:
        # The reading's own receive time, not `now`: readings drained from a backlog in
        # one batch must not look simultaneous.
        samples = d.samples
        if not samples or t - samples[-1][0] >= self._sample_every_s:
            samples.append((t, s))
            horizon = t - self._params.ror_window_s
            # Keep as base the newest sample at least a window old, so the span stays
            # near one window whatever the detector's reporting rate.
            while len(samples) > 1 and samples[1][0] <= horizon:
                samples.popleft()
            base_t, base_s = samples[0]
            span = t - base_t
            d.rise = (s - base_s) * 60.0 / span if span >= self._min_span_s else 0.0
        rise = d.rise
        fast = rise > self._params.ror_rise_k_per_min
        calm = rise < self._calm_rise
        if d.ror:
            if calm and s < self._ror_clear_c:
                d.ror = False
                out = _add(out, self._ror_signal(d, s, ROR, active=False))
        elif fast and s >= self._params.ror_threshold_c:
            d.ror = True
            out = _add(out, self._ror_signal(d, s, ROR, active=True))
        if d.prewarn:
            if calm and s < self._prewarn_clear_c:
                d.prewarn = False
                out = _add(out, self._ror_signal(d, s, PREWARN, active=False))
        elif fast and s >= self._prewarn_c:
            d.prewarn = True
            out = _add(out, self._ror_signal(d, s, PREWARN, active=True))
        return out

    def _battery(self, d: _Detector, value: float, out: list[AlertSignal]) -> list[AlertSignal]:
        low = self._params.low_battery_pct
        if d.battery_low:
            if value >= low + _BATTERY_CLEAR_MARGIN_PCT:
                d.battery_low = False
                out = _add(out, self._battery_signal(d, value, active=False))
        elif value <= low:
            d.battery_low = True
            out = _add(out, self._battery_signal(d, value, active=True))
        return out

    def _event(self, d: _Detector, event: Event, out: list[AlertSignal]) -> list[AlertSignal]:
        kind = event.kind
        name = d.spec.id
        if kind == "fire.detector.alarm" and not d.alarm:
            d.alarm = True
            summary = f"Heat detector {name} reports a fire alarm"
            return _add(out, self._signal(d, ALARM, Severity.CRITICAL, True, summary, {}))
        if kind == "fire.detector.alarm_cleared" and d.alarm:
            d.alarm = False
            summary = f"Heat detector {name} fire alarm cleared"
            return _add(out, self._signal(d, ALARM, Severity.CRITICAL, False, summary, {}))
        if kind == "fire.detector.fault" and not d.fault:
            d.fault = True
            d.fault_code = str(event.data.get("code", ""))
            summary = f"Heat detector {name} reports fault {d.fault_code or '(no code)'}"
            data = {"code": d.fault_code}
            return _add(out, self._signal(d, FAULT, Severity.MAJOR, True, summary, data))
        if kind == "fire.detector.fault_cleared" and d.fault:
            d.fault = False
            summary = f"Heat detector {name} fault {d.fault_code or '(no code)'} cleared"
            data = {"code": d.fault_code}
            return _add(out, self._signal(d, FAULT, Severity.MAJOR, False, summary, data))
        return out

    def _signal(
        self,
        d: _Detector,
        rule: str,
        severity: Severity,
        active: bool,
        summary: str,
        data: dict[str, Any],
    ) -> AlertSignal:
        return AlertSignal(rule, d.spec.id, d.spec.zone, severity, active, summary, data)

    def _static_signal(self, d: _Detector, s: float, *, active: bool) -> AlertSignal:
        spec = d.spec
        if active:
            summary = (
                f"Heat detector {spec.id} at {s:.1f} °C"
                f" (class {spec.detector_class} threshold {d.static_c:g} °C)"
            )
        else:
            summary = f"Heat detector {spec.id} back to {s:.1f} °C (below {d.static_clear_c:g} °C)"
        data = {"temperature_c": round(s, 1), "threshold_c": d.static_c}
        return self._signal(d, STATIC, Severity.CRITICAL, active, summary, data)

    def _ror_signal(self, d: _Detector, s: float, rule: str, *, active: bool) -> AlertSignal:
        p = self._params
        spec = d.spec
        if rule == ROR:
            severity, threshold, what = Severity.CRITICAL, p.ror_threshold_c, "rate-of-rise alarm"
        else:
            severity, threshold, what = Severity.MAJOR, self._prewarn_c, "rate-of-rise pre-warning"
        if active:
            summary = (
                f"Heat detector {spec.id} rising {d.rise:.1f} K/min at {s:.1f} °C"
                f" ({what}: over {p.ror_rise_k_per_min:g} K/min from {threshold:g} °C,"
                f" class {spec.detector_class})"
            )
        else:
            summary = f"Heat detector {spec.id} {what} over: {d.rise:.1f} K/min at {s:.1f} °C"
        data = {
            "temperature_c": round(s, 1),
            "rise_k_per_min": round(d.rise, 2),
            "threshold_c": threshold,
        }
        return self._signal(d, rule, severity, active, summary, data)

    def _battery_signal(self, d: _Detector, value: float, *, active: bool) -> AlertSignal:
        low = self._params.low_battery_pct
        if active:
            summary = f"Heat detector {d.spec.id} battery at {value:g} % (low at {low:g} %)"
        else:
            summary = f"Heat detector {d.spec.id} battery back to {value:g} %"
        return self._signal(d, BATTERY_LOW, Severity.MINOR, active, summary, {"battery_pct": value})
