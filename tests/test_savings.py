"""Savings figures from tables with known answers (ASHRAE Guideline 14 statistics)."""

from __future__ import annotations

import math

import pytest

from gateway.savings import cv_rmse, fit, nmbe, savings


def test_a_baseline_with_a_known_cv_rmse() -> None:
    # 100 +/- 10 kWh, four months, mean model (p = 1): sqrt(400 / 3) / 100.
    actual = [110.0, 90.0, 110.0, 90.0]
    model = fit(actual)
    predicted = [model.predict() for _ in actual]
    assert cv_rmse(actual, predicted, model.parameters) == pytest.approx(math.sqrt(400 / 3) / 100)
    assert nmbe(actual, predicted, model.parameters) == pytest.approx(0.0)


def test_a_degree_day_line_is_fitted_exactly() -> None:
    degree_days = [100.0, 200.0, 300.0, 400.0]
    kwh = [1500.0 + 2.0 * dd for dd in degree_days]
    model = fit(kwh, degree_days)
    assert (model.intercept, model.slope, model.parameters) == pytest.approx((1500.0, 2.0, 2))


def test_lighting_savings_after_the_led_retrofit() -> None:
    # Twelve baseline months near 10,000 kWh; the LED months use 6,000: 48,000 kWh avoided
    # over twelve months at 0.8 yuan/kWh is 38,400 yuan.
    baseline = [10_000.0 + (200.0 if m % 2 else -200.0) for m in range(12)]
    reporting = [6_000.0] * 12
    result = savings(baseline, reporting, tariff_yuan=0.8)
    assert result.acceptable
    assert result.cv_rmse == pytest.approx(math.sqrt(12 * 200.0**2 / 11) / 10_000)
    assert result.avoided == pytest.approx(48_000.0)
    assert result.avoided_yuan == pytest.approx(38_400.0)


def test_the_baseline_is_adjusted_to_the_reporting_period_weather() -> None:
    # AC pumps: 1,000 kWh + 5 kWh per cooling degree-day. A hotter reporting period would
    # have used more without the retrofit; the saving is measured against that.
    dd_base = [50.0, 150.0, 250.0, 350.0]
    base = [1_000.0 + 5 * d for d in dd_base]
    dd_report = [400.0, 400.0]
    result = savings(base, [2_500.0, 2_500.0], tariff_yuan=1.0, baseline_driver=dd_base,
                     reporting_driver=dd_report)
    assert result.adjusted_baseline == pytest.approx(2 * 3_000.0)
    assert result.avoided == pytest.approx(1_000.0)


@pytest.mark.parametrize(("spread", "granularity", "ok"), [
    (0.10, "monthly", True), (0.20, "monthly", False), (0.20, "hourly", True),
    (0.40, "hourly", False)])
def test_guideline_14_limits(spread: float, granularity: str, ok: bool) -> None:
    baseline = [100.0 * (1 + spread), 100.0 * (1 - spread)] * 6
    result = savings(baseline, [90.0], tariff_yuan=1.0,
                     granularity=granularity)  # type: ignore[arg-type]
    assert result.acceptable is ok


def test_a_baseline_needs_two_periods() -> None:
    with pytest.raises(ValueError, match="at least two periods"):
        fit([1.0])
