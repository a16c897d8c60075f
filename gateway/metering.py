"""Energy, water and gas figures for the facilities staff: per meter, and consumption
rolled up per building and system (lighting, ac_pumps, water_main, gas, ...), as
Prometheus families read at scrape time. Fed with the pipeline's readings; no I/O.

What a meter's readings mean comes from its profile: the continuous total of its first
import counter per unit (`<metric>_consumed`: kWh, m3 or Nm3, never an export counter)
is its consumption; `power_w` and flows in m3/h or Nm3/h are its gauges. Labels are
the site file's meter ids, buildings and systems: bounded by the site file.

Rollups add the meters of one building and system. A building's incomer and the
circuits behind it are different systems (`main`, `lighting`, ...), so nothing is
counted twice as long as meters of one system do not sit behind each other.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.events import Reading


class Quantity(enum.StrEnum):
    ENERGY = "energy"  # kWh
    WATER = "water"  # m3
    GAS = "gas"  # Nm3


# A counter's unit -> what it measures. Other counters (e.g. run hours) are not consumption.
COUNTER_UNITS: dict[str, Quantity] = {"kWh": Quantity.ENERGY, "m3": Quantity.WATER,
                                      "Nm3": Quantity.GAS}
# A gauge's unit -> (what it measures, scale to the exposed unit).
GAUGE_UNITS: dict[str, tuple[Quantity, float]] = {
    "W": (Quantity.ENERGY, 0.001),  # power, in kW
    "kW": (Quantity.ENERGY, 1.0),
    "m3/h": (Quantity.WATER, 1.0),
    "Nm3/h": (Quantity.GAS, 1.0),
}
CONSUMED = "_consumed"

# (family name, help) per quantity: totals are counters, the rate now a gauge.
_METER_TOTAL: dict[Quantity, tuple[str, str]] = {
    Quantity.ENERGY: ("gateway_meter_energy_kwh",
                      "Energy a meter counted since the gateway first read it (kWh), continuous"
                      " across meter resets and replacements."),
    Quantity.WATER: ("gateway_meter_water_m3",
                     "Water a meter counted since the gateway first read it (m3), continuous"
                     " across meter resets and replacements."),
    Quantity.GAS: ("gateway_meter_gas_nm3",
                   "Gas a meter counted since the gateway first read it (Nm3), continuous"
                   " across meter resets and replacements."),
}
_METER_RATE: dict[Quantity, tuple[str, str]] = {
    Quantity.ENERGY: ("gateway_meter_power_kw", "A meter's total active power now (kW)."),
    Quantity.WATER: ("gateway_meter_water_flow_m3h", "A water meter's flow now (m3/h)."),
    Quantity.GAS: ("gateway_meter_gas_flow_nm3h", "A gas meter's flow now (Nm3/h)."),
}
_ROLLUP: dict[Quantity, tuple[str, str]] = {
    Quantity.ENERGY: ("gateway_consumption_energy_kwh",
                      "Energy consumed per building and system (kWh): the sum of its meters."),
    Quantity.WATER: ("gateway_consumption_water_m3",
                     "Water consumed per building and system (m3): the sum of its meters."),
    Quantity.GAS: ("gateway_consumption_gas_nm3",
                   "Gas consumed per building and system (Nm3): the sum of its meters."),
}


@dataclass(frozen=True, slots=True)
class CounterRegister:
    metric: str  # the profile's register metric (the raw meter reading)
    unit: str


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One meter as the figures see it: where it is and which readings count."""

    meter: str  # device id
    building: str
    system: str
    # reading metric (`<counter>_consumed`) -> the quantity it totals
    totals: Mapping[str, Quantity] = field(default_factory=dict)
    # reading metric -> (quantity, scale to kW, m3/h or Nm3/h)
    rates: Mapping[str, tuple[Quantity, float]] = field(default_factory=dict)


def consumption_counters(counters: Iterable[CounterRegister]) -> dict[str, Quantity]:
    """The counter that is a meter's consumption, per quantity: the first of its unit
    that is not an export counter; as `<metric>_consumed` -> quantity."""
    out: dict[str, Quantity] = {}
    taken: set[Quantity] = set()
    for reg in counters:
        quantity = COUNTER_UNITS.get(reg.unit)
        if quantity is None or quantity in taken or "export" in reg.metric:
            continue
        taken.add(quantity)
        out[reg.metric + CONSUMED] = quantity
    return out


def rate_gauges(gauges: Iterable[tuple[str, str]]) -> dict[str, tuple[Quantity, float]]:
    """(metric, unit) of a profile's gauges -> the meter's rate per quantity (the first)."""
    out: dict[str, tuple[Quantity, float]] = {}
    taken: set[Quantity] = set()
    for metric, unit in gauges:
        known = GAUGE_UNITS.get(unit)
        if known is None or known[0] in taken:
            continue
        taken.add(known[0])
        out[metric] = known
    return out


class Metering:
    """The meters' latest totals and rates. `observe` takes every reading (one dict
    lookup for a reading that is not a meter's); Prometheus calls `collect`."""

    def __init__(self, specs: Iterable[MeterSpec]) -> None:
        self.specs = {s.meter: s for s in specs}
        self._totals: dict[tuple[str, str], float] = {}
        self._rates: dict[tuple[str, str], float] = {}
        self._wanted: dict[tuple[str, str], tuple[bool, float]] = {}
        for spec in self.specs.values():
            for metric in spec.totals:
                self._wanted[(spec.meter, metric)] = (True, 1.0)
            for metric, (_, scale) in spec.rates.items():
                self._wanted[(spec.meter, metric)] = (False, scale)

    @property
    def metrics(self) -> set[str]:
        """Every reading metric a meter's figures come from."""
        return {metric for _, metric in self._wanted}

    def restore(self, totals: Mapping[tuple[str, str], float]) -> None:
        """Totals as the store last holds them (source, metric) -> value, so the counters
        show the consumption so far before the meters are first read again."""
        for key, value in totals.items():
            wanted = self._wanted.get(key)
            if wanted is not None and wanted[0]:
                self._totals[key] = value

    def observe(self, reading: Reading) -> None:
        key = (reading.source, reading.metric)
        wanted = self._wanted.get(key)
        if wanted is None or not math.isfinite(reading.value):
            return  # the driver never sends NaN; a figure must not become one either
        is_total, scale = wanted
        if is_total:
            # The driver's total only grows within one run. It starts again from 0 only
            # where the store held no state for it; Prometheus reads that as a reset.
            self._totals[key] = reading.value
        else:
            self._rates[key] = reading.value * scale

    def total(self, meter: str, quantity: Quantity) -> float | None:
        spec = self.specs[meter]
        for metric, q in spec.totals.items():
            if q is quantity:
                return self._totals.get((meter, metric))
        return None

    def rollup(self) -> dict[tuple[Quantity, str, str], float]:
        """(quantity, building, system) -> the sum of its meters' totals. Every
        building and system that has a meter of that quantity is listed, 0 included."""
        out: dict[tuple[Quantity, str, str], float] = {}
        for spec in self.specs.values():
            for metric, quantity in spec.totals.items():
                key = (quantity, spec.building, spec.system)
                out[key] = out.get(key, 0.0) + self._totals.get((spec.meter, metric), 0.0)
        return out

    def collect(self) -> Iterator[Metric]:
        labels = ["meter", "building", "system"]
        totals = {q: CounterMetricFamily(*_METER_TOTAL[q], labels=labels) for q in Quantity}
        rates = {q: GaugeMetricFamily(*_METER_RATE[q], labels=labels) for q in Quantity}
        rollups = {q: CounterMetricFamily(*_ROLLUP[q], labels=["building", "system"])
                   for q in Quantity}
        for meter in sorted(self.specs):
            spec = self.specs[meter]
            names = [meter, spec.building, spec.system]
            for metric, quantity in spec.totals.items():
                value = self._totals.get((meter, metric))
                if value is not None:
                    totals[quantity].add_metric(names, value)
            for metric, (quantity, _) in spec.rates.items():
                value = self._rates.get((meter, metric))
                if value is not None:
                    rates[quantity].add_metric(names, value)
        for (quantity, building, system), value in sorted(self.rollup().items()):
            rollups[quantity].add_metric([building, system], value)
        for q in Quantity:
            yield totals[q]
            yield rates[q]
            yield rollups[q]
