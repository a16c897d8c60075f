"""Fire rules from tables: static by class, hysteresis, rate of rise, noise, flags,
battery; time is a plain number the tests move."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from typing import Any

import pytest

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.errors import ConfigError
from gateway.events import Event, Heartbeat, Reading, Severity
from gateway.rules.fire import DetectorSpec, FireParams, FireRules, class_parts

T0 = 1_764_000_000.0
DET = "hd-main-03"
ZONE = "main-3f-east"
PARAMS = FireParams(static_threshold_c={"A1": 56.0, "A2": 60.0, "B": 75.0, "C": 90.0})


class Detector:
    """Drives one detector through the rules and keeps every signal with its time."""

    def __init__(
        self, detector_class: str = "A1R", heartbeat_s: float = 30.0, step_s: float = 5.0
    ) -> None:
        spec = DetectorSpec(DET, ZONE, detector_class, heartbeat_s)
        self.rules = FireRules(PARAMS, [spec])
        self.t = T0
        self.step_s = step_s
        self.signals: list[tuple[float, AlertSignal]] = []

    def _observe(self, item: Event | Reading | Heartbeat) -> list[AlertSignal]:
        out = self.rules.observe(item, self.t)
        self.signals.extend((self.t, s) for s in out)
        return out

    def temps(self, values: Iterable[float]) -> None:
        for value in values:
            self.t += self.step_s
            self._observe(Reading(DET, "temperature", value, "celsius", self.t))

    def hold(self, value: float, seconds: float = 300.0) -> None:
        self.temps([value] * int(seconds / self.step_s))

    def ramp(self, start: float, k_per_min: float, until: float) -> None:
        values = []
        value = start
        while value <= until:
            values.append(value)
            value += k_per_min * self.step_s / 60.0
        self.temps(values)

    def battery(self, pct: float) -> None:
        self.t += self.step_s
        self._observe(Reading(DET, "battery", pct, "percent", self.t))

    def event(self, kind: str, **data: Any) -> None:
        self.t += self.step_s
        self._observe(Event(kind, DET, seq=1, time=self.t, data=data))

    def heartbeat(self, at: float) -> list[AlertSignal]:
        self.t = at
        return self._observe(Heartbeat(DET, at))

    def tick(self, at: float) -> list[AlertSignal]:
        self.t = at
        out = self.rules.tick(at)
        self.signals.extend((at, s) for s in out)
        return out

    def transitions(self, rule: str | None = None) -> list[tuple[str, bool]]:
        return [(s.rule, s.active) for _, s in self.signals if rule is None or s.rule == rule]

    def first(self, rule: str, active: bool = True) -> AlertSignal:
        return next(s for _, s in self.signals if s.rule == rule and s.active is active)


@pytest.mark.parametrize(
    ("detector_class", "expected"),
    [
        ("A1R", ("A1", "R")),
        ("A1S", ("A1", "S")),
        ("A1", ("A1", "")),
        ("a2s", ("A2", "S")),
        ("BS", ("B", "S")),
        ("CR", ("C", "R")),
        ("C", ("C", "")),
    ],
)
def test_class_parts(detector_class: str, expected: tuple[str, str]) -> None:
    assert class_parts(detector_class) == expected


@pytest.mark.parametrize(
    ("detector_class", "temperature", "fires"),
    [
        ("A1R", 55.9, False),
        ("A1R", 56.0, True),
        ("A1S", 55.9, False),
        ("A1S", 57.0, True),
        ("A1", 56.5, True),
        ("A2S", 59.5, False),
        ("A2S", 60.0, True),
        ("BS", 70.0, False),
        ("BS", 74.9, False),
        ("BS", 75.0, True),
        ("C", 89.0, False),
        ("CR", 90.5, True),
    ],
)
def test_static_threshold_by_class(detector_class: str, temperature: float, fires: bool) -> None:
    d = Detector(detector_class)
    d.hold(temperature)
    # Once, not once per reading: rules speak only on transitions.
    assert d.transitions() == ([("fire.static", True)] if fires else [])


def test_static_signal_carries_zone_numbers_and_summary() -> None:
    d = Detector("A1R")
    d.temps([61.2])
    signal = d.first("fire.static")
    assert signal.severity is Severity.CRITICAL
    assert (signal.source, signal.zone, signal.key) == (DET, ZONE, f"fire.static:{DET}")
    assert signal.summary == "Heat detector hd-main-03 at 61.2 °C (class A1R threshold 56 °C)"
    assert signal.data == {"temperature_c": 61.2, "threshold_c": 56.0}


@pytest.mark.parametrize(
    ("detector_class", "steps"),
    [
        # threshold 56, clears only below 56 - 3 = 53
        (
            "A1S",
            [(57.0, True), (54.0, True), (53.1, True), (52.9, False), (55.5, False), (56.2, True)],
        ),
        # threshold 75, clears below 72
        ("BS", [(76.0, True), (72.5, True), (71.5, False), (74.0, False)]),
    ],
)
def test_static_hysteresis(detector_class: str, steps: list[tuple[float, bool]]) -> None:
    d = Detector(detector_class)
    for temperature, firing in steps:
        d.hold(temperature)
        changes = d.transitions("fire.static")
        assert (changes[-1][1] if changes else False) is firing, temperature
    # Transitions alternate: never two raises or two clears in a row.
    states = [active for _, active in d.transitions("fire.static")]
    assert all(a != b for a, b in itertools.pairwise(states))


@pytest.mark.parametrize(
    ("detector_class", "k_per_min", "top", "expected"),
    [
        # A fast rise: pre-warning from 36 °C, alarm from 46 °C, long before 56 °C.
        ("A1R", 6.0, 55.0, [("fire.prewarn", True), ("fire.ror", True)]),
        ("A1R", 10.0, 55.0, [("fire.prewarn", True), ("fire.ror", True)]),
        ("A2R", 6.0, 59.0, [("fire.prewarn", True), ("fire.ror", True)]),
        # Static-only classes ignore the rise: nothing below their static threshold.
        ("A1S", 10.0, 55.0, []),
        ("A1", 10.0, 55.0, []),
        ("BS", 10.0, 74.0, []),
        # A slow rise is not a rate-of-rise fire.
        ("A1R", 2.0, 55.0, []),
        ("A1R", 3.5, 55.0, []),
    ],
)
def test_rate_of_rise(
    detector_class: str, k_per_min: float, top: float, expected: list[tuple[str, bool]]
) -> None:
    d = Detector(detector_class)
    d.hold(25.0, 120)
    d.ramp(25.0, k_per_min, top)
    assert d.transitions() == expected


def test_rate_of_rise_alarm_at_46_not_56() -> None:
    d = Detector("A1R")
    d.hold(25.0, 120)
    d.ramp(25.0, 6.0, 55.0)
    ror = d.first("fire.ror")
    assert ror.severity is Severity.CRITICAL
    assert 46.0 <= ror.data["temperature_c"] < 47.5
    assert ror.data["rise_k_per_min"] > 4.0
    prewarn = d.first("fire.prewarn")
    assert prewarn.severity is Severity.MAJOR
    assert 36.0 <= prewarn.data["temperature_c"] < 37.5
    assert "rising" in ror.summary
    assert "K/min" in ror.summary


def test_rate_of_rise_clears_after_cooling_with_hysteresis() -> None:
    d = Detector("A1R")
    d.hold(25.0, 120)
    d.ramp(25.0, 6.0, 48.0)
    d.hold(48.0)  # the rise has stopped but it is still hot: keep the alarm
    assert d.transitions() == [("fire.prewarn", True), ("fire.ror", True)]
    d.hold(44.0)  # below 46 but within the 3 K hysteresis
    assert d.transitions("fire.ror") == [("fire.ror", True)]
    d.hold(42.0)  # below 43: the alarm clears, the pre-warning (36 - 3 = 33) stays
    assert d.transitions() == [("fire.prewarn", True), ("fire.ror", True), ("fire.ror", False)]
    d.hold(34.0)
    assert d.transitions("fire.prewarn") == [("fire.prewarn", True)]
    d.hold(25.0)
    assert d.transitions("fire.prewarn") == [("fire.prewarn", True), ("fire.prewarn", False)]


def test_prewarn_only_when_the_rise_stops_below_46() -> None:
    d = Detector("A1R")
    d.hold(25.0, 120)
    d.ramp(25.0, 6.0, 42.0)
    d.hold(42.0)
    assert d.transitions() == [("fire.prewarn", True)]


@pytest.mark.parametrize(
    ("base", "step_s", "pattern"),
    [
        (40.0, 5.0, "uniform"),
        (45.6, 5.0, "uniform"),  # hovering just under the 46 °C ROR threshold
        (45.6, 1.0, "uniform"),
        (45.6, 30.0, "uniform"),  # routine reports every heartbeat
        (45.6, 5.0, "square-5s"),
        (45.6, 5.0, "square-30s"),
        (45.6, 5.0, "square-60s"),
        (45.6, 1.0, "square-30s"),
    ],
)
def test_noise_does_not_trigger(base: float, step_s: float, pattern: str) -> None:
    d = Detector("A1R", step_s=step_s)
    n = int(1800 / step_s)
    if pattern == "uniform":
        rng = random.Random(7)
        values = [base + rng.uniform(-0.5, 0.5) for _ in range(n)]
    else:
        half_period = int(pattern.removeprefix("square-").removesuffix("s")) / step_s
        values = [base + (0.5 if int(i // half_period) % 2 else -0.5) for i in range(n)]
    d.temps(values)
    assert d.transitions() == []


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (["fire.detector.alarm"], [("fire.alarm", True)]),
        (["fire.detector.alarm", "fire.detector.alarm"], [("fire.alarm", True)]),
        (["fire.detector.alarm_cleared"], []),
        (
            ["fire.detector.alarm", "fire.detector.alarm_cleared", "fire.detector.alarm"],
            [("fire.alarm", True), ("fire.alarm", False), ("fire.alarm", True)],
        ),
        (["fire.detector.fault"], [("fire.fault", True)]),
        (["fire.detector.fault", "fire.detector.fault"], [("fire.fault", True)]),
        (["fire.detector.fault_cleared"], []),
        (
            ["fire.detector.fault", "fire.detector.fault_cleared"],
            [("fire.fault", True), ("fire.fault", False)],
        ),
        (["fire.detector.isolated", "camera.stream.down"], []),
    ],
)
def test_detector_flags(events: list[str], expected: list[tuple[str, bool]]) -> None:
    d = Detector("A1R")
    for kind in events:
        d.event(kind, code="sensor_open")
    assert d.transitions() == expected


def test_alarm_and_fault_severity_and_code() -> None:
    d = Detector("A1R")
    d.event("fire.detector.alarm")
    d.event("fire.detector.fault", code="dirty")
    d.event("fire.detector.fault_cleared")
    assert d.first("fire.alarm").severity is Severity.CRITICAL
    fault = d.first("fire.fault")
    assert fault.severity is Severity.MAJOR
    assert fault.data == {"code": "dirty"}
    assert "dirty" in fault.summary
    assert d.first("fire.fault", active=False).data == {"code": "dirty"}


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        ([90, 50, 21], []),
        ([90, 20], [True]),
        ([19, 8, 19], [True]),
        ([19, 24, 24.9], [True]),  # no flapping just above the limit
        ([19, 25], [True, False]),
        ([19, 25, 30, 20], [True, False, True]),
    ],
)
def test_battery_low(levels: list[float], expected: list[bool]) -> None:
    d = Detector("A1R")
    for level in levels:
        d.battery(level)
    assert d.transitions() == [("fire.battery_low", active) for active in expected]
    if expected:
        assert d.first("fire.battery_low").severity is Severity.MINOR


def test_nothing_changed_returns_the_shared_empty_list() -> None:
    d = Detector("A1R")
    reading = Reading(DET, "temperature", 22.0, "celsius", T0)
    first = d.rules.observe(reading, T0)
    second = d.rules.observe(Heartbeat(DET, T0 + 1), T0 + 1)
    stranger = d.rules.observe(Reading("hd-nowhere-99", "temperature", 99.0, "celsius", T0), T0)
    assert first == []
    assert second == []
    assert stranger == []
    assert first is second is stranger  # no allocation on the hot path


def test_unknown_source_is_ignored_entirely() -> None:
    d = Detector("A1R")
    for i in range(50):
        item = Event("fire.detector.alarm", "hd-nowhere-99", seq=i, time=T0 + i)
        assert d.rules.observe(item, T0 + i) == []
    assert d.rules.tick(T0 + 50) == []


def _firing(rule: str, data: dict[str, Any] | None = None) -> Alert:
    return Alert(
        id="01KAAAAAAAAAAAAAAAAAAAAAAA",
        key=f"{rule}:{DET}",
        rule=rule,
        source=DET,
        zone=ZONE,
        severity=Severity.CRITICAL,
        state=AlertState.FIRING,
        raised_at=T0 - 3600,
        cleared_at=None,
        summary="",
        data=data or {},
    )


def test_restore_lets_alerts_from_before_a_restart_clear() -> None:
    d = Detector("A1R")
    d.rules.restore(
        [_firing("fire.static"), _firing("device.stale"), _firing("fire.fault", {"code": "comm"})]
    )
    d.temps([24.0])
    d.event("fire.detector.fault_cleared")
    # A stale alert is presence's to clear (tests/test_rules_presence.py), not fire's.
    assert d.transitions() == [
        ("fire.static", False),
        ("fire.fault", False),
    ]
    assert d.first("fire.fault", active=False).data == {"code": "comm"}


@pytest.mark.parametrize(
    ("detectors", "message"),
    [
        ([DetectorSpec("hd-x", ZONE, "D", 30.0)], "class 'D' has no static threshold"),
        (
            [DetectorSpec("hd-x", ZONE, "A1R", 30.0), DetectorSpec("hd-x", ZONE, "BS", 30.0)],
            "hd-x: listed twice",
        ),
    ],
)
def test_bad_detector_list_is_refused(detectors: list[DetectorSpec], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FireRules(PARAMS, detectors)


def test_fast_fire_after_routine_reports() -> None:
    # What the site's detectors do: a report every 30 s, then every second once hot.
    d = Detector("A1R", step_s=30.0)
    d.hold(22.0, 600)
    d.step_s = 1.0
    d.ramp(22.0, 10.0, 55.0)
    assert d.transitions() == [("fire.prewarn", True), ("fire.ror", True)]
    assert 46.0 <= d.first("fire.ror").data["temperature_c"] < 47.5


@pytest.mark.parametrize("report_every_s", [1.0, 5.0, 30.0])
def test_static_alarm_is_not_held_back_by_slow_reporting(report_every_s: float) -> None:
    """Regression: smoothing per reading (not per second) let a detector reporting every
    30 s cross 56 °C only at about 63 °C in a 6 K/min fire."""
    rules = FireRules(PARAMS, [DetectorSpec("hd-slow", "z", "A1S", 30.0)])
    t, temp = 0.0, 25.0
    raised_at: float | None = None
    while raised_at is None and temp < 80.0:
        signals = rules.observe(Reading("hd-slow", "temperature", temp, "celsius", t), t)
        if any(s.rule == "fire.static" and s.active for s in signals):
            raised_at = temp
        t += report_every_s
        temp += 6.0 / 60.0 * report_every_s
    assert raised_at is not None
    # At most one report interval of rise past the threshold, plus a little smoothing lag.
    assert raised_at <= 56.0 + 6.0 / 60.0 * report_every_s + 1.0, raised_at
