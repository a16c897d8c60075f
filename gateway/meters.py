"""The site's meters as the daemon wires them: their figures' specs from the site file
and profiles, and their counters' state as the store last holds it (so consumption is
continuous across a restart of the daemon)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.energy_config import Period
from gateway.metering import (
    CONSUMED,
    CounterRegister,
    MeterSpec,
    consumption_counters,
    rate_gauges,
)
from gateway.rules.presence import PresenceSpec
from gateway.rules.water import WaterMeterSpec, WaterParams, WaterRules
from gateway.savings_report import SavingsError, report_from_db

if TYPE_CHECKING:
    from drivers.modbus.config import ModbusDevice
    from drivers.modbus.profile import Profile
    from gateway.config import Site
    from gateway.store import Store

METER_KINDS = ("energy_meter", "water_meter", "gas_meter")
UNASSIGNED = "unassigned"


def site_meters(site: Site, profiles_dir: Path) -> list[tuple[ModbusDevice, Profile]]:
    """Every enabled meter of the site file with its profile."""
    from drivers.modbus.profile import load_profile  # pydantic and YAML only, no pymodbus

    profiles: dict[str, Profile] = {}
    out = []
    for device in site.devices_of("modbus"):
        if device.kind not in METER_KINDS:
            continue
        if device.profile not in profiles:
            profiles[device.profile] = load_profile(profiles_dir / f"{device.profile}.yaml")
        out.append((device, profiles[device.profile]))
    return out


def building_of(site: Site, device: ModbusDevice) -> str:
    if device.building is not None:
        return device.building
    try:
        return site.building_of_zone(device.zone).id
    except KeyError:
        return UNASSIGNED


def meter_spec(site: Site, device: ModbusDevice, profile: Profile) -> MeterSpec:
    counters = [CounterRegister(r.metric, r.unit) for r in profile.registers
                if r.kind == "counter"]
    gauges = [(r.metric, r.unit) for r in profile.registers if r.kind == "gauge"]
    return MeterSpec(device.id, building_of(site, device), device.system or UNASSIGNED,
                     consumption_counters(counters), rate_gauges(gauges))


def meter_specs(site: Site, profiles_dir: Path) -> list[MeterSpec]:
    return [meter_spec(site, d, p) for d, p in site_meters(site, profiles_dir)]


def stored_totals(store: Store, metrics: Iterable[str]) -> dict[tuple[str, str], float]:
    """(meter, metric) -> the newest stored value of each total."""
    return {key: last for key, (_, last) in store.latest_readings(set(metrics)).items()}


def counter_states(store: Store, devices: Iterable[tuple[str, Iterable[str]]]
                   ) -> Mapping[tuple[str, str], tuple[float, float, float]]:
    """(device, counter metric) -> (continuous total, raw reading, time) from the newest
    stored minute of its `_consumed` total, with the raw counter of that same minute."""
    wanted = {(device, metric) for device, metrics in devices for metric in metrics}
    if not wanted:
        return {}
    latest = store.latest_readings({metric + CONSUMED for _, metric in wanted})
    out: dict[tuple[str, str], tuple[float, float, float]] = {}
    for device, metric in sorted(wanted):
        found = latest.get((device, metric + CONSUMED))
        if found is None:
            continue
        minute, total = found
        raw = store.reading_at(device, metric, minute)
        if raw is not None:
            # The minute's start: the rise allowed since then is never too small.
            out[(device, metric)] = (total, raw, minute * 60.0)
    return out


def water_rules(site: Site, store: Store, now: float) -> WaterRules:
    """The leak rule over the site's water meters (system `water_main`: leaks by night
    flow; `water_sub`: never idles), with the night history the store holds."""
    cfg = site.rules.water
    params = WaterParams(cfg.factor, cfg.margin_m3h, cfg.nights, cfg.minimum_history,
                         cfg.idle_m3h, cfg.idle_nights)
    specs = [
        WaterMeterSpec(d.id, d.zone, "main" if d.system == "water_main" else "sub")
        for d in site.devices_of("modbus")
        if d.kind == "water_meter" and d.system in ("water_main", "water_sub")
    ]
    since = int((now - cfg.history_nights * 86_400) // 60)
    history = {s.id: store.minute_series(s.id, s.flow_metric, since) for s in specs}
    return WaterRules(params, specs, timezone=site.site.timezone, history=history, now=now)


class SavingsDesk:
    """The site's savings reports, made from the store file on a worker thread so a year
    of minutes never holds up the loop."""

    def __init__(self, site: Site, site_path: Path, db_path: Path,
                 specs: Mapping[str, MeterSpec], *,
                 now: Callable[[], float] = time.time) -> None:
        self.site = site
        self.site_path = site_path
        self.db_path = db_path
        self.specs = specs
        self._now = now  # months that end later are not over yet

    def measures(self) -> list[dict[str, Any]]:
        return [{"id": m.id, "name": m.name, "meters": m.meters,
                 "baseline": {"start": m.baseline.start.isoformat(),
                              "end": m.baseline.end.isoformat()},
                 "reporting": {"start": m.reporting.start.isoformat(),
                               "end": m.reporting.end.isoformat()},
                 "expected_yuan_per_year": m.expected_yuan_per_year}
                for m in self.site.energy.measures]

    def report(self, measure_id: str, baseline: Period | None = None,
               reporting: Period | None = None, temperature_csv: Path | None = None
               ) -> dict[str, Any]:
        try:
            measure = self.site.energy.measure(measure_id)
        except KeyError:
            known = ", ".join(m.id for m in self.site.energy.measures) or "none"
            raise SavingsError(f"no measure {measure_id!r} (known: {known})") from None
        return report_from_db(self.db_path, measure, self.specs, tariffs=self.site.energy.tariffs,
                              timezone=self.site.site.timezone, site_dir=self.site_path.parent,
                              baseline=baseline, reporting=reporting,
                              temperature_csv=temperature_csv, now=self._now())

    async def report_async(self, measure_id: str, baseline: Period | None,
                           reporting: Period | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.report, measure_id, baseline, reporting)


_LABELS = {"energy_meter": "Energy meter", "water_meter": "Water meter",
           "gas_meter": "Gas meter", "io_module": "I/O module", "elevator": "Elevator",
           "fire_panel": "Fire panel", "temperature_sensor": "Temperature sensor"}


def modbus_presence(site: Site) -> list[PresenceSpec]:
    """Every polled Modbus unit goes stale after the silence factor x its poll interval
    without a reading: a dead meter is a gap in the figures, and says so."""
    return [PresenceSpec(d.id, d.zone, d.poll_s, _LABELS.get(d.kind, "Device"), "poll")
            for d in site.devices_of("modbus")]
