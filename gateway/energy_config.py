"""The site file's energy and water parts: the leak rule's parameters (`rules.water`),
the tariffs, and the savings measures with their baseline and reporting periods
(`energy`)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from gateway.config_parts import Model, Name


class WaterRulesConfig(Model):
    """Leak detection by minimum night flow on the meters of system `water_main`, and the
    never-idles check on those of system `water_sub` (02:00-05:00 site time)."""

    # A night is "above" when its MNF exceeds the baseline by both this factor and this
    # margin: the factor alone would flag a main whose baseline is near zero.
    factor: float = Field(default=1.5, gt=1, le=20)
    margin_m3h: float = Field(default=0.5, ge=0, le=100)
    # Nights above in a row before the leak alert: one busy night is not a leak.
    nights: int = Field(default=3, ge=1, le=30)
    # Nights of baseline needed before any night is judged.
    minimum_history: int = Field(default=3, ge=1, le=7)
    # A sub-meter whose MNF stays above this for `idle_nights` never idles.
    idle_m3h: float = Field(default=0.01, ge=0, le=10)
    idle_nights: int = Field(default=3, ge=1, le=30)
    # How far back the night history is read from the store at start.
    history_nights: int = Field(default=21, ge=8, le=90)


class Tariffs(Model):
    """Yuan per unit, for the savings report."""

    electricity_yuan_kwh: float = Field(default=0.85, ge=0, le=100)
    water_yuan_m3: float = Field(default=4.6, ge=0, le=1000)
    gas_yuan_nm3: float = Field(default=3.9, ge=0, le=1000)


class Period(Model):
    """From `start` (included) to `end` (excluded), site dates."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must come after start {self.start}")
        return self


class TemperatureSeries(Model):
    """An outdoor temperature sensor's readings in the store: its daily means are the
    mean of its hourly means, for a day with at least `min_hours` hours of readings."""

    source: Name
    metric: Name = "temperature_c"
    min_hours: int = Field(default=18, ge=1, le=24)


class DegreeDays(Model):
    """Adjust the baseline by degree-days from daily mean temperatures: a file
    (`date,mean_c` per line), an outdoor sensor's series in the store, or both (the
    sensor's days first, the file for the days the sensor has no mean: before it was
    installed, or silent). Cooling above `base_c`, heating below it, or both."""

    temperature_csv: str | None = None
    sensor: TemperatureSeries | None = None
    base_c: float = Field(default=18.0, ge=-10, le=35)
    kind: Literal["cooling", "heating", "both"] = "both"

    @model_validator(mode="after")
    def _one_origin(self) -> DegreeDays:
        if self.temperature_csv is None and self.sensor is None:
            raise ValueError("degree-days take temperature_csv, sensor, or both")
        return self

    @property
    def origin(self) -> str:
        """Where the temperatures come from, for messages."""
        if self.sensor is None:
            return str(self.temperature_csv)
        origin = f"{self.sensor.source}/{self.sensor.metric} in the store"
        return origin if self.temperature_csv is None else f"{origin} or {self.temperature_csv}"


class Measure(Model):
    """One energy or water saving measure and the meters that show it."""

    id: Name
    name: str
    # The meters that show it, of any quantity (the AC pumps save power, gas and water):
    # each quantity is reported on its own, with its tariff, and the yuan added up.
    meters: list[Name] = Field(min_length=1)
    baseline: Period
    reporting: Period
    granularity: Literal["monthly", "hourly"] = "monthly"
    degree_days: DegreeDays | None = None
    # What the measure was promised to save a year (yuan): printed beside the result.
    expected_yuan_per_year: float | None = Field(default=None, ge=0)


class EnergyConfig(Model):
    tariffs: Tariffs = Field(default_factory=Tariffs)
    measures: list[Measure] = Field(default_factory=list)

    def measure(self, measure_id: str) -> Measure:
        for m in self.measures:
            if m.id == measure_id:
                return m
        raise KeyError(measure_id)
