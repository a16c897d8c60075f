"""Prometheus metrics of the lifts and the fire panel, read at scrape time from the rule
modules' state: availability per lift and per building, the boxes' counters, isolated
fire points per zone. Labels are lift, building and zone ids: bounded by the site file."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.lifts import LiftModules


class LiftCollector:
    """Registered once; `current()` gives the modules of the core running now."""

    def __init__(self, current: Callable[[], LiftModules | None]) -> None:
        self._current = current

    def describe(self) -> list[Metric]:
        return []  # collected on demand only: the modules change when the core rebuilds

    def collect(self) -> Iterator[Metric]:
        mods = self._current()
        if mods is None:
            return
        available = GaugeMetricFamily(
            "gateway_elevator_available", "1 while the lift is in normal service.",
            labels=["lift", "building"])
        known = GaugeMetricFamily(
            "gateway_elevator_status_known", "1 once the lift's box has said its status.",
            labels=["lift"])
        counters = {
            name: CounterMetricFamily(f"gateway_elevator_{name}", help_text, labels=["lift"])
            for name, help_text in (("trips", "Trips, as the lift's box counts them."),
                                    ("running_hours", "Running hours, from the box."),
                                    ("door_cycles", "Door cycles, from the box."))
        }
        ratio = GaugeMetricFamily(
            "gateway_building_elevators_available_ratio",
            "Share of a building's lifts in normal service.", labels=["building"])
        per_building: dict[str, list[bool]] = {}
        for lift in mods.elevator.snapshot():
            lift_id, building = str(lift["lift"]), str(lift["building"])
            up = bool(lift["available"])
            available.add_metric([lift_id, building], 1.0 if up else 0.0)
            known.add_metric([lift_id], 1.0 if lift["known"] else 0.0)
            per_building.setdefault(building, []).append(up)
            values = lift["counters"]
            assert isinstance(values, dict)
            for name, family in counters.items():
                if name in values:
                    family.add_metric([lift_id], float(values[name]))
        for building, ups in sorted(per_building.items()):
            ratio.add_metric([building], sum(ups) / len(ups))
        isolated = GaugeMetricFamily(
            "gateway_fire_points_isolated", "Fire panel points isolated now, per zone.",
            labels=["zone"])
        for zone, count in sorted(mods.fire_model.isolated_by_zone().items()):
            isolated.add_metric([zone], float(count))
        yield from (available, known, *counters.values(), ratio, isolated)
