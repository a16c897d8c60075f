"""The leak rule as the daemon runs it (`WaterRules`): night flow from a water main's
readings, judged after 05:00 site time, a leak after N nights above the baseline, the
never-idles check on sub-meters, and the same verdicts after a restart rebuilt from
the night history. Time is injected; the nights are tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.events import Reading, Severity
from gateway.rules.water import (
    LEAK,
    NEVER_IDLES,
    WaterMeterSpec,
    WaterParams,
    WaterRules,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
FIRST = date(2026, 3, 1)
MAIN = WaterMeterSpec("wm-main", "main-plant-room", "main")
SUB = WaterMeterSpec("wm-canteen", "main-canteen", "sub")
PARAMS = WaterParams(factor=1.5, margin_m3h=0.5, nights=3, minimum_history=3,
                     idle_m3h=0.01, idle_nights=3)


def _local(day: date, hour: int, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).timestamp()


def _day_of_readings(day: date, night_flow: float, source: str = "wm-main",
                     every_s: float = 120.0) -> list[Reading]:
    """A day of flow readings: `night_flow` from 00:00 to 06:00, 12 m3/h after."""
    out = []
    t = _local(day, 0)
    while t < _local(day, 23, 59):
        hour = datetime.fromtimestamp(t, SHANGHAI).hour
        out.append(Reading(source, "flow_m3h", night_flow if hour < 6 else 12.0, "m3/h", t))
        t += every_s
    return out


def _run(rules: WaterRules, readings: Sequence[Reading], tick_every_s: float = 600.0
         ) -> list[AlertSignal]:
    """Feed readings in order, ticking as time passes."""
    out: list[AlertSignal] = []
    last_tick = -math.inf
    for r in readings:
        assert rules.observe(r, r.time) == []
        if r.time - last_tick >= tick_every_s:
            last_tick = r.time
            out += [s for s in rules.tick(r.time) if isinstance(s, AlertSignal)]
    return out


def _nights(flows: Sequence[float], source: str = "wm-main") -> list[Reading]:
    return [r for i, flow in enumerate(flows)
            for r in _day_of_readings(FIRST + timedelta(days=i), flow, source)]


# Five quiet nights (0.8-1.0 m3/h), then a leak of 4.5 m3/h for four nights, then mended.
MAIN_NIGHTS = [1.0, 0.8, 0.9, 1.0, 0.9, 5.4, 5.5, 5.3, 5.4, 0.9, 1.0]


def test_a_leak_is_raised_on_the_third_night_above_and_cleared_once_mended() -> None:
    rules = WaterRules(PARAMS, [MAIN])
    signals = _run(rules, _nights(MAIN_NIGHTS))
    assert [(s.rule, s.active) for s in signals] == [(LEAK, True), (LEAK, False)]
    raised, cleared = signals
    assert raised.severity is Severity.MAJOR and raised.source == "wm-main"
    assert raised.data["night"] == (FIRST + timedelta(days=7)).isoformat()  # third above
    assert raised.data["nights_above"] == 3
    assert abs(raised.data["mnf_m3h"] - 5.3) < 1e-9
    # The 20th percentile of 0.8, 0.9, 0.9, 1.0, 1.0.
    assert abs(raised.data["baseline_m3h"] - 0.88) < 1e-9
    assert "a leak" in raised.summary
    # Judged after 05:00 site time on the morning the night ends, never before.
    assert cleared.data["night"] == (FIRST + timedelta(days=9)).isoformat()


def test_two_nights_above_are_not_a_leak() -> None:
    rules = WaterRules(PARAMS, [MAIN])
    assert _run(rules, _nights([1.0, 0.9, 1.0, 5.0, 5.0, 1.0, 1.0])) == []


def test_a_rise_within_the_margin_is_not_a_leak() -> None:
    # Baseline 0.2: 0.6 is three times it, but only 0.4 m3/h above (margin 0.5).
    rules = WaterRules(PARAMS, [MAIN])
    assert _run(rules, _nights([0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6])) == []


def test_a_sub_meter_that_never_idles_at_night() -> None:
    rules = WaterRules(PARAMS, [SUB])
    flows = [0.0, 0.0, 0.05, 0.04, 0.06, 0.0]
    signals = _run(rules, _nights(flows, "wm-canteen"))
    assert [(s.rule, s.active, s.severity) for s in signals] == [
        (NEVER_IDLES, True, Severity.MINOR), (NEVER_IDLES, False, Severity.MINOR)]


def test_daytime_flow_and_other_readings_never_count() -> None:
    rules = WaterRules(PARAMS, [MAIN])
    readings = _nights([1.0, 1.0, 1.0])
    # A leak that only runs in the day (06:00-24:00), NaN at night, other metrics and meters.
    for i in range(3, 8):
        day = FIRST + timedelta(days=i)
        readings += [Reading("wm-main", "flow_m3h", v, "m3/h", _local(day, h))
                     for h, v in ((2, math.nan), (3, 1.0), (3, math.inf))]
        readings += [Reading("wm-main", "flow_m3h", 1.0, "m3/h", _local(day, 2, m))
                     for m in range(0, 60, 5)]
        readings += [Reading("wm-main", "flow_m3h", 1.0, "m3/h", _local(day, 4, m))
                     for m in range(0, 60, 5)]
        readings += [Reading("wm-main", "flow_m3h", 30.0, "m3/h", _local(day, h))
                     for h in range(6, 24)]
        readings += [Reading("wm-main", "water_total_m3", 9e9, "m3", _local(day, 3)),
                     Reading("wm-other", "flow_m3h", 50.0, "m3/h", _local(day, 3))]
    readings.sort(key=lambda r: r.time)
    assert _run(rules, readings) == []


def test_the_window_is_site_time_not_utc() -> None:
    """High flow from 02:00 to 05:00 UTC (10:00-13:00 in Changsha) is daytime use."""
    rules = WaterRules(PARAMS, [MAIN])
    readings = []
    for i in range(8):
        day = FIRST + timedelta(days=i)
        for minute in range(0, 24 * 60, 2):
            t = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo("UTC")).timestamp()
            t += minute * 60
            utc_hour = minute // 60
            flow = 9.0 if 2 <= utc_hour < 5 and i >= 3 else 1.0
            readings.append(Reading("wm-main", "flow_m3h", flow, "m3/h", t))
    assert _run(rules, readings) == []


def _history(readings: Sequence[Reading]) -> dict[str, list[tuple[float, float]]]:
    """What the store holds of readings: per-minute means, by meter."""
    minutes: dict[tuple[str, int], list[float]] = {}
    for r in readings:
        minutes.setdefault((r.source, int(r.time // 60)), []).append(r.value)
    out: dict[str, list[tuple[float, float]]] = {}
    for (source, minute), values in sorted(minutes.items()):
        out.setdefault(source, []).append((minute * 60.0, sum(values) / len(values)))
    return out


def _restarted_every_day(readings: Sequence[Reading], specs: Sequence[WaterMeterSpec],
                         restart_hour: int) -> list[AlertSignal]:
    """Run day by day, each day a new daemon built from the history before its start and
    the alerts then firing."""
    out: list[AlertSignal] = []
    firing: dict[str, Alert] = {}
    days = sorted({datetime.fromtimestamp(r.time, SHANGHAI).date() for r in readings})
    for day in days:
        cut = _local(day, restart_hour)
        before = [r for r in readings if r.time < cut]
        rules = WaterRules(PARAMS, specs, history=_history(before), now=cut)
        rules.restore(firing.values())
        said = _run(rules, [r for r in readings if cut <= r.time < cut + 86_400])
        out += said
        for s in said:
            if s.active:
                firing[s.key] = Alert(s.key, s.key, s.rule, s.source, s.zone, s.severity,
                                      AlertState.FIRING, cut, None, s.summary, s.data)
            else:
                firing.pop(s.key, None)
    return out


def test_restarts_at_any_hour_give_the_same_verdicts() -> None:
    """The night history rebuilt from the store (minute means) replays every finished
    night: a daemon restarted every day, before, inside or after the window, raises and
    clears on the same nights as one that ran through."""
    readings = _nights(MAIN_NIGHTS) + _nights([0.0, 0.0, 0.05, 0.04, 0.06, 0.0], "wm-canteen")
    readings.sort(key=lambda r: r.time)
    through = [(s.rule, s.source, s.active, s.data.get("night"))
               for s in _run(WaterRules(PARAMS, [MAIN, SUB]), readings)]
    assert len(through) == 4
    for hour in (1, 3, 5, 12):
        got = _restarted_every_day(readings, [MAIN, SUB], hour)
        assert [(s.rule, s.source, s.active, s.data.get("night")) for s in got] == through, hour


def test_a_leak_firing_before_the_restart_clears_when_mended() -> None:
    rules = WaterRules(PARAMS, [MAIN])
    rules.restore([Alert("a1", f"{LEAK}:wm-main", LEAK, "wm-main", "main-plant-room",
                         Severity.MAJOR, AlertState.FIRING, 0.0, None, "leak", {})])
    signals = _run(rules, _nights([1.0, 1.0, 1.0, 1.0]))
    assert [(s.rule, s.active) for s in signals] == [(LEAK, False)]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    nights=st.lists(st.sampled_from([0.0, 0.8, 1.0, 1.2, 4.0, 5.5]), min_size=4, max_size=11),
    restart_hour=st.integers(0, 23),
)
def test_property_a_restart_never_changes_the_verdicts(nights: list[float],
                                                       restart_hour: int) -> None:
    """Any run of nights, a daemon restarted every day at any hour: the same signals, on
    the same nights, as one that ran through."""
    readings = [r for i, flow in enumerate(nights)
                for r in _day_of_readings(FIRST + timedelta(days=i), flow, every_s=600.0)]
    through = [(s.rule, s.active, s.data.get("night"))
               for s in _run(WaterRules(PARAMS, [MAIN]), readings)]
    got = [(s.rule, s.active, s.data.get("night"))
           for s in _restarted_every_day(readings, [MAIN], restart_hour)]
    assert got == through
