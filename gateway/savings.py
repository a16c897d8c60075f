"""Savings evidence (IPMVP option C): a baseline model of consumption fitted on the
baseline period, its fit judged by ASHRAE Guideline 14, and the avoided consumption of
the reporting period against the baseline adjusted to that period's conditions. Pure.

Guideline 14 accepts a baseline model with CV(RMSE) <= 15 % and |NMBE| <= 5 % on monthly
data, <= 30 % and <= 10 % on hourly data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

LIMITS: dict[str, tuple[float, float]] = {"monthly": (0.15, 0.05), "hourly": (0.30, 0.10)}


@dataclass(frozen=True, slots=True)
class BaselineModel:
    """consumption = intercept + slope x driver (degree-days; slope 0 without a driver)."""

    intercept: float
    slope: float
    parameters: int  # 1 for a mean, 2 for a line: the p of Guideline 14's n - p

    def predict(self, driver: float = 0.0) -> float:
        return self.intercept + self.slope * driver


def fit(consumption: Sequence[float], driver: Sequence[float] | None = None) -> BaselineModel:
    """Ordinary least squares on the driver, or the mean where there is none."""
    n = len(consumption)
    if n < 2:
        raise ValueError("a baseline needs at least two periods")
    mean_y = sum(consumption) / n
    if driver is None:
        return BaselineModel(mean_y, 0.0, 1)
    if len(driver) != n:
        raise ValueError("consumption and driver must cover the same periods")
    mean_x = sum(driver) / n
    sxx = sum((x - mean_x) ** 2 for x in driver)
    if sxx == 0:
        return BaselineModel(mean_y, 0.0, 1)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(driver, consumption, strict=True)) / sxx
    return BaselineModel(mean_y - slope * mean_x, slope, 2)


def cv_rmse(actual: Sequence[float], predicted: Sequence[float], parameters: int) -> float:
    n = len(actual)
    mean = sum(actual) / n
    squares = sum((a - p) ** 2 for a, p in zip(actual, predicted, strict=True))
    return math.sqrt(squares / (n - parameters)) / mean


def nmbe(actual: Sequence[float], predicted: Sequence[float], parameters: int) -> float:
    n = len(actual)
    mean = sum(actual) / n
    return sum(a - p for a, p in zip(actual, predicted, strict=True)) / ((n - parameters) * mean)


@dataclass(frozen=True, slots=True)
class Savings:
    cv_rmse: float
    nmbe: float
    acceptable: bool  # the baseline model meets Guideline 14 for its granularity
    adjusted_baseline: float  # what the reporting period would have used without the measure
    reported: float
    avoided: float
    avoided_yuan: float


def savings(
    baseline: Sequence[float],
    reporting: Sequence[float],
    *,
    tariff_yuan: float,
    granularity: Literal["monthly", "hourly"] = "monthly",
    baseline_driver: Sequence[float] | None = None,
    reporting_driver: Sequence[float] | None = None,
) -> Savings:
    model = fit(baseline, baseline_driver)
    fitted = [model.predict(x) for x in (baseline_driver or [0.0] * len(baseline))]
    cv, bias = cv_rmse(baseline, fitted, model.parameters), nmbe(baseline, fitted,
                                                                 model.parameters)
    cv_limit, bias_limit = LIMITS[granularity]
    drivers = reporting_driver or [0.0] * len(reporting)
    adjusted = sum(model.predict(x) for x in drivers)
    reported = sum(reporting)
    avoided = adjusted - reported
    return Savings(cv, bias, cv <= cv_limit and abs(bias) <= bias_limit, adjusted, reported,
                   avoided, avoided * tariff_yuan)
