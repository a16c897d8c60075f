"""Table tests of the per-minute downsampler."""

from __future__ import annotations

import math

import pytest

from gateway.events import Reading
from gateway.store.downsample import Downsampler, MinuteAggregate

T0 = 1_764_000_000.0  # 2025-11-24 16:00:00 UTC, a minute boundary
M0 = int(T0 // 60)


def r(value: float, at: float, source: str = "hd-b1-01", metric: str = "temperature") -> Reading:
    return Reading(source=source, metric=metric, value=value, unit="celsius", time=T0 + at)


def agg(
    minute: int,
    lo: float,
    hi: float,
    avg: float,
    last: float,
    count: int,
    source: str = "hd-b1-01",
    metric: str = "temperature",
) -> MinuteAggregate:
    return MinuteAggregate(source, metric, "celsius", M0 + minute, lo, hi, avg, last, count)


FLUSH_DUE_CASES = [
    pytest.param([], 120, [], id="nothing-added"),
    pytest.param([r(21.0, 5)], 59.9, [], id="current-minute-stays-open"),
    pytest.param([r(21.0, 5)], 60, [agg(0, 21.0, 21.0, 21.0, 21.0, 1)], id="next-minute-flushes"),
    pytest.param(
        [r(20.0, 1), r(24.0, 2), r(22.0, 3)],
        61,
        [agg(0, 20.0, 24.0, 22.0, 22.0, 3)],
        id="min-max-avg-last",
    ),
    pytest.param(
        [r(20.0, 10), r(30.0, 70)],
        70,
        [agg(0, 20.0, 20.0, 20.0, 20.0, 1)],
        id="only-finished-minutes",
    ),
    pytest.param(
        [r(20.0, 10), r(30.0, 70), r(40.0, 130)],
        200,
        [
            agg(0, 20.0, 20.0, 20.0, 20.0, 1),
            agg(1, 30.0, 30.0, 30.0, 30.0, 1),
            agg(2, 40.0, 40.0, 40.0, 40.0, 1),
        ],
        id="several-minutes-at-once",
    ),
    pytest.param(
        [r(20.0, 70), r(99.0, 30)],
        125,
        [agg(1, 20.0, 20.0, 20.0, 20.0, 1), agg(0, 99.0, 99.0, 99.0, 99.0, 1)],
        id="late-reading-keeps-its-own-minute",
    ),
    pytest.param(
        [r(20.0, 1), r(50.0, 2, metric="humidity"), r(21.0, 3, source="hd-b1-02")],
        60,
        [
            agg(0, 20.0, 20.0, 20.0, 20.0, 1),
            agg(0, 50.0, 50.0, 50.0, 50.0, 1, metric="humidity"),
            agg(0, 21.0, 21.0, 21.0, 21.0, 1, source="hd-b1-02"),
        ],
        id="series-kept-apart",
    ),
    pytest.param(
        [r(20.0, 1), r(math.nan, 2), r(math.inf, 3), r(-math.inf, 4), r(22.0, 5)],
        60,
        [agg(0, 20.0, 22.0, 21.0, 22.0, 2)],
        id="non-finite-values-discarded",
    ),
]


@pytest.mark.parametrize(("readings", "now", "expected"), FLUSH_DUE_CASES)
def test_flush_due(readings: list[Reading], now: float, expected: list[MinuteAggregate]) -> None:
    d = Downsampler()
    for reading in readings:
        d.add(reading)
    assert d.flush_due(T0 + now) == expected
    # A flushed minute is gone: flushing again at the same time yields nothing.
    assert d.flush_due(T0 + now) == []


def test_non_finite_values_are_counted() -> None:
    d = Downsampler()
    for value in (1.0, math.nan, math.inf):
        d.add(r(value, 1))
    assert d.discarded == 2
    assert len(d) == 1


def test_flush_all_takes_the_open_minute_too() -> None:
    d = Downsampler()
    d.add(r(20.0, 10))
    d.add(r(30.0, 70))
    assert d.flush_due(T0 + 60) == [agg(0, 20.0, 20.0, 20.0, 20.0, 1)]
    assert d.flush_all() == [agg(1, 30.0, 30.0, 30.0, 30.0, 1)]
    assert len(d) == 0
    assert d.flush_all() == []


def test_unit_follows_the_latest_reading() -> None:
    d = Downsampler()
    d.add(Reading("m-1", "power", 1.0, "W", T0))
    d.add(Reading("m-1", "power", 2.0, "kW", T0 + 1))
    [minute] = d.flush_all()
    assert minute.unit == "kW"
    assert (minute.min, minute.max, minute.count) == (1.0, 2.0, 2)
