"""Minimum night flow and leak detection, from tables with known answers."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.rules.water import (
    LeakDetector,
    minimum_night_flow,
    never_idles,
    night_bounds,
    nights_between,
    percentile,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT = date(2026, 3, 10)


def _samples(flows_by_minute: dict[int, float], night: date = NIGHT) -> list[tuple[float, float]]:
    """Samples every minute from 01:00 to 06:00 site time; minute 0 is 01:00."""
    start = datetime(night.year, night.month, night.day, 1, 0, tzinfo=SHANGHAI).timestamp()
    return [(start + 60 * m, flows_by_minute.get(m, 2.0)) for m in range(0, 301)]


def test_the_night_window_is_site_time() -> None:
    start, end = night_bounds(NIGHT, SHANGHAI)
    assert datetime.fromtimestamp(start, ZoneInfo("UTC")).hour == 18  # 02:00 at UTC+8
    assert end - start == 3 * 3600


def test_minimum_night_flow_is_the_lowest_hour_mean_inside_the_window() -> None:
    # 2.0 m3/h everywhere, except an hour of 0.4 from 03:00 to 03:59 site time.
    flows = {m: 0.4 for m in range(120, 180)}
    assert minimum_night_flow(_samples(flows), NIGHT, SHANGHAI) == pytest.approx(0.4)


def test_low_flow_outside_the_window_does_not_count() -> None:
    flows = {m: 0.0 for m in range(0, 60)}  # 01:00-01:59 and 05:01-06:00 quiet
    flows |= {m: 0.0 for m in range(241, 301)}
    assert minimum_night_flow(_samples(flows), NIGHT, SHANGHAI) == pytest.approx(2.0)


def test_a_short_dip_is_averaged_over_the_hour() -> None:
    flows = {m: 0.0 for m in range(150, 156)}  # six quiet minutes
    mnf = minimum_night_flow(_samples(flows), NIGHT, SHANGHAI)
    assert mnf == pytest.approx(2.0 * 54 / 60)


def test_no_full_hour_of_samples_is_no_answer() -> None:
    assert minimum_night_flow([], NIGHT, SHANGHAI) is None


@pytest.mark.parametrize(("values", "q", "want"), [
    ([1, 2, 3, 4, 5], 0.2, 1.8), ([5, 1, 4, 2, 3], 0.0, 1), ([7.0], 0.2, 7.0),
    ([0.5] * 7, 0.2, 0.5)])
def test_percentile(values: list[float], q: float, want: float) -> None:
    assert percentile(values, q) == pytest.approx(want)


def test_the_compound_leak_is_raised_after_n_nights_and_stays_raised() -> None:
    # Seven quiet nights near 0.6 m3/h, then the mains start leaking ~4.5 m3/h.
    detector = LeakDetector(factor=1.5, margin_m3h=0.5, nights_required=3)
    nights = nights_between(date(2026, 3, 1), date(2026, 3, 14))
    mnfs = [0.6, 0.55, 0.62, 0.58, 0.6, 0.65, 0.57] + [5.1] * 7
    verdicts = [detector.add_night(n, m) for n, m in zip(nights, mnfs, strict=True)]
    assert [v.leak for v in verdicts] == [False] * 9 + [True] * 5
    assert verdicts[7].baseline == pytest.approx(percentile(mnfs[:7], 0.2))
    # The leaking nights never entered the baseline.
    assert verdicts[-1].baseline == verdicts[7].baseline


@pytest.mark.parametrize(("mnfs", "leak"), [
    # above the factor but within the absolute margin: a small meter's noise
    ([0.1] * 7 + [0.5, 0.5, 0.5], False),
    # one high night (a burst main repaired next day) is not a leak
    ([0.6] * 7 + [5.0, 0.6, 5.0, 0.6, 5.0], False),
    # three in a row is
    ([0.6] * 7 + [5.0, 5.0, 5.0], True),
    # too little history: nothing is judged
    ([5.0, 5.0, 5.0, 5.0], False),
])
def test_leak_needs_factor_margin_and_n_nights(mnfs: list[float], leak: bool) -> None:
    detector = LeakDetector(factor=1.5, margin_m3h=0.5, nights_required=3)
    nights = nights_between(date(2026, 3, 1), date(2026, 3, len(mnfs)))
    verdicts = [detector.add_night(n, m) for n, m in zip(nights, mnfs, strict=True)]
    assert verdicts[-1].leak is leak


@pytest.mark.parametrize(("mnfs", "flag"), [
    ([0.0, 0.0, 0.0], False), ([0.3, 0.2, 0.4], True), ([0.3, 0.0, 0.4], False),
    ([0.3, 0.3], False)])
def test_a_sub_meter_that_never_idles(mnfs: list[float], flag: bool) -> None:
    assert never_idles(mnfs, idle_m3h=0.01, nights=3) is flag
