"""The compound's meters, simulated from the site file: one pymodbus server per link the
site file names (a TCP meter or gateway, a serial server, an RS-485 line, which is served
with RTU framing on TCP), each unit built from its profile.

Every meter follows a load curve of site time (office hours, nights, weekends, the AC's
seasons) and its counters accumulate along it. A measure of the site file
(`energy.measures`) takes effect on its reporting start: the lighting circuits drop to
LED load, the AC pumps and their gas and make-up water drop, the water main's leak is
mended. A leak can be injected on any water meter.

    python -m simulators.compound_meters --site config/site.yaml
    python -m simulators.compound_meters --history 2025-01-01:2026-12-01 --data-dir data/demo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from drivers.modbus.config import ModbusDevice
from drivers.modbus.profile import load_profile
from gateway.config import Site, load_site
from simulators.modbus_meters import MeterServer, SimulatedMeter

# Integration step: counters grow by the load of each step of at most this length.
STEP_S = 60.0
VOLTS = 230.0
POWER_FACTOR = 0.95
# The leak the compound found on its mains: "of the order of 4-5 m3/h continuous".
SITE_LEAK_M3H = 4.5

# Changsha's monthly mean temperatures (climate normals, C): the simulated weather. The
# AC plant (circulating pumps, its gas and make-up water) works to the degree-days from
# 18 C, heating and cooling alike; `config/changsha-temperature.csv` holds the same
# typical year, day by day, for the savings report's degree-day baseline.
CHANGSHA_NORMALS_C = {1: 4.6, 2: 6.9, 3: 11.1, 4: 17.2, 5: 22.3, 6: 26.0, 7: 29.3, 8: 28.6,
                      9: 24.4, 10: 18.8, 11: 12.6, 12: 7.0}
DEGREE_DAY_BASE_C = 18.0
_FULL_LOAD_K = 13.4  # the degree-days of a January day: the AC plant at full load


def typical_day_mean(day: dt.date) -> float:
    """The day's mean temperature in a typical year: the monthly normals, interpolated
    between the middles of the months."""
    mid = dt.date(day.year, day.month, 15)
    other = mid + dt.timedelta(days=30 if day >= mid else -30)
    here, there = CHANGSHA_NORMALS_C[mid.month], CHANGSHA_NORMALS_C[other.month]
    return round(here + (there - here) * abs((day - mid).days) / 30.5, 1)


# The outdoor day: coolest before dawn, warmest mid-afternoon, this far either side of the
# day's mean (Changsha's typical diurnal range is 7-9 K).
DIURNAL_K = 4.0
WARMEST_HOUR = 14.5


def outdoor_c(local: dt.datetime) -> float:
    """The outdoor temperature at a site time: the day's mean and its diurnal swing, which
    averages out over the day's hours, so the day's mean of hourly means is the day's."""
    hour = local.hour + local.minute / 60 + local.second / 3600
    swing = DIURNAL_K * math.cos(2 * math.pi * (hour - WARMEST_HOUR) / 24)
    return round(typical_day_mean(local.date()) + swing, 2)


def ac_plant_factor(mean_c: float) -> float:
    """A quarter of the AC plant's load runs whatever the weather; the rest follows the
    day's degree-days (heating below 18 C, cooling above)."""
    return 0.25 + 0.75 * min(1.0, abs(mean_c - DEGREE_DAY_BASE_C) / _FULL_LOAD_K)


@dataclass(frozen=True, slots=True)
class LoadCurve:
    """A level (kW, m3/h or Nm3/h) by site time: `day` inside the busy hours of a
    weekday, `night` outside them, the weekend's own levels, and a monthly factor."""

    day: float
    night: float
    weekend_day: float | None = None
    weekend_night: float | None = None
    busy: tuple[tuple[int, int], ...] = ((7, 19),)  # [start hour, end hour)
    weather: bool = False  # follows the AC plant's degree-days

    def at(self, local: dt.datetime) -> float:
        busy = any(a <= local.hour < b for a, b in self.busy)
        if local.weekday() >= 5:
            day = self.weekend_day if self.weekend_day is not None else self.day
            night = self.weekend_night if self.weekend_night is not None else self.night
        else:
            day, night = self.day, self.night
        level = day if busy else night
        if self.weather:
            level *= ac_plant_factor(typical_day_mean(local.date()))
        return level


# The compound's loads, by (kind, system); a device's id picks a variant where it says.
CURVES: dict[str, LoadCurve] = {
    "main": LoadCurve(210.0, 45.0, 80.0, 40.0),
    "lighting": LoadCurve(9.5, 0.9, 2.0, 0.9),
    "lighting-outdoor": LoadCurve(0.3, 4.5, 0.3, 4.5, busy=((6, 18),)),
    "lighting-parking": LoadCurve(3.5, 3.5),
    "ac_pumps": LoadCurve(22.0, 5.0, 8.0, 4.0, weather=True),
    "power_room": LoadCurve(12.0, 6.0, 8.0, 6.0),
    "water_main": LoadCurve(13.0, 0.9, 5.0, 0.9, busy=((6, 22),)),
    "water_sub": LoadCurve(2.2, 0.0, 0.4, 0.0, busy=((7, 20),)),
    "water_sub-canteen": LoadCurve(4.0, 0.0, 1.0, 0.0, busy=((6, 8), (10, 13), (16, 19))),
    "water_sub-garden": LoadCurve(1.2, 0.0, busy=((6, 7),)),
    "water_ac": LoadCurve(1.6, 0.3, 0.8, 0.3, weather=True),
    "gas": LoadCurve(30.0, 6.0, 12.0, 5.0, weather=True),
    "gas-canteen": LoadCurve(14.0, 0.4, 4.0, 0.4, busy=((6, 8), (10, 13), (16, 19))),
}
# What a measure leaves of a load from its reporting start.
AFTER_MEASURE = {"lighting": 0.55, "ac_pumps": 0.72, "gas": 0.88, "water_ac": 0.8}


def curve_for(device: ModbusDevice) -> tuple[str, LoadCurve]:
    system = device.system or "main"
    if device.kind == "water_meter" and system not in ("water_main", "water_sub"):
        system = "water_ac"
    for variant in ("outdoor", "parking", "canteen", "garden"):
        name = f"{system}-{variant}"
        if variant in device.id and name in CURVES:
            return system, CURVES[name]
    return system, CURVES.get(system, CURVES["main"])


@dataclass
class CompoundMeter:
    """One unit of the compound: its registers, its load, and what changed it."""

    device: ModbusDevice
    sim: SimulatedMeter
    system: str
    curve: LoadCurve
    tz: ZoneInfo
    measure_from: dt.date | None = None  # a measure's reporting start
    after_measure: float = 1.0  # what the measure leaves of the load
    leak_m3h: float = 0.0  # water lost continuously (water meters)
    mended_on: dt.date | None = None  # the leak stops from this date
    noise: random.Random = field(default_factory=random.Random)

    def level(self, t: float) -> float:
        local = dt.datetime.fromtimestamp(t, self.tz)
        level = self.curve.at(local)
        if self.measure_from is not None and local.date() >= self.measure_from:
            level *= self.after_measure
        if level > 0:
            level *= 1.0 + self.noise.uniform(-0.03, 0.03)
        if self.device.kind == "water_meter" and (
                self.mended_on is None or local.date() < self.mended_on):
            level += self.leak_m3h
        return level

    def step(self, start: float, end: float, step_s: float = STEP_S) -> None:
        """Move from `start` to `end`: counters grow by the load, gauges show its end."""
        if self.device.kind == "temperature_sensor":
            self._weather(end)
            return
        t = start
        while t < end:
            dt_s = min(step_s, end - t)
            self._show(self.level(t + dt_s / 2), dt_s / 3600.0)
            t += dt_s
        if end <= start:
            self._show(self.level(end), 0.0)

    def _weather(self, t: float) -> None:
        temperature = outdoor_c(dt.datetime.fromtimestamp(t, self.tz))
        swing = temperature - typical_day_mean(dt.datetime.fromtimestamp(t, self.tz).date())
        self.sim.values["temperature_c"] = temperature
        # Drier in the warm afternoon, damp before dawn (Changsha averages about 80 %).
        self.sim.values["humidity_pct"] = round(min(100.0, max(0.0, 78.0 - 2.5 * swing)), 1)

    def _show(self, level: float, hours: float) -> None:
        v = self.sim.values
        if self.device.kind == "energy_meter":
            v["power_w"] = level * 1000.0
            amps = level * 1000.0 / (3 * VOLTS * POWER_FACTOR)
            for phase in (1, 2, 3):
                v[f"current_l{phase}_a"] = amps
                v[f"voltage_l{phase}_v"] = VOLTS
            if "power_factor" in v:
                v["power_factor"] = POWER_FACTOR
            v["energy_import_kwh"] = v.get("energy_import_kwh", 0.0) + level * hours
        elif self.device.kind == "water_meter":
            v["flow_m3h"] = level
            v["water_total_m3"] = v.get("water_total_m3", 0.0) + level * hours
        elif self.device.kind == "gas_meter":
            v["gas_flow_nm3h"] = level
            v["gas_total_nm3"] = v.get("gas_total_nm3", 0.0) + level * hours


def _server_side(device: ModbusDevice) -> tuple[str, bool]:
    """The link a unit's server stands for, and whether it speaks RTU framing."""
    end = device.endpoint
    return end.link, end.line_is_serial


class CompoundMeters:
    """Every enabled meter of the site file on loopback servers (free ports). `addresses`
    says where each link of the site file is served, for the gateway's overrides."""

    def __init__(self, site: Site, profiles_dir: Path, *, seed: int = 0,
                 clock: Callable[[], float] = time.time, host: str = "127.0.0.1") -> None:
        self.site = site
        self.clock = clock
        self.host = host
        self.tz = ZoneInfo(site.site.timezone)
        measures: dict[str, dt.date] = {}
        for measure in site.energy.measures:
            for meter_id in measure.meters:
                measures.setdefault(meter_id, measure.reporting.start)
        rng = random.Random(seed)
        # The site's leak (4-5 m3/h in all) is shared by the mains its measure mends.
        leaking_mains = max(1, sum(1 for d in site.devices_of("modbus")
                                   if d.system == "water_main" and d.id in measures))
        self.meters: dict[str, CompoundMeter] = {}
        self._links: dict[str, tuple[bool, list[SimulatedMeter]]] = {}
        profiles = {}
        for device in site.devices_of("modbus"):
            if device.kind not in ("energy_meter", "water_meter", "gas_meter", "io_module",
                                   "temperature_sensor"):
                continue
            if device.profile not in profiles:
                profiles[device.profile] = load_profile(profiles_dir / f"{device.profile}.yaml")
            # Probe-able firmware (DTSU666) is simulated as the primary map.
            sim = SimulatedMeter(device.endpoint.unit, profiles[device.profile])
            system, curve = curve_for(device)
            meter = CompoundMeter(device, sim, system, curve, self.tz,
                                  noise=random.Random(rng.random()))
            start = measures.get(device.id)
            if start is not None and system == "water_main":
                meter.leak_m3h, meter.mended_on = SITE_LEAK_M3H / leaking_mains, start
            elif start is not None:
                meter.measure_from = start
                meter.after_measure = AFTER_MEASURE.get(system, 1.0)
            self.meters[device.id] = meter
            link, rtu = _server_side(device)
            self._links.setdefault(link, (rtu, []))[1].append(sim)
        self.servers: dict[str, MeterServer] = {}
        self._last: float | None = None

    @property
    def addresses(self) -> dict[str, tuple[str, int]]:
        return {link: (self.host, server.port) for link, server in self.servers.items()}

    def inject_leak(self, device: str, m3h: float) -> None:
        meter = self.meters[device]
        meter.leak_m3h, meter.mended_on = m3h, None

    def step(self, now: float | None = None, step_s: float = STEP_S) -> None:
        now = self.clock() if now is None else now
        start = now if self._last is None else self._last
        for meter in self.meters.values():
            meter.step(start, now, step_s)
        self._last = now

    async def start(self) -> CompoundMeters:
        self.step()
        for link, (rtu, sims) in sorted(self._links.items()):
            self.servers[link] = await MeterServer(sims, rtu=rtu, host=self.host).start()
        return self

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.step()

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()
        self.servers = {}


# A history is integrated hour by hour from midnight: the curves change on the hour.
HISTORY_STEP_S = 3600.0
_HISTORY_BATCH = 20_000


async def write_history(site_path: Path, data_dir: Path, start: dt.date, end: dt.date, *,
                        seed: int = 0) -> int:
    """The meters' consumption totals from `start` to `end` (site dates), one row an hour,
    written into the store of `data_dir` as the daemon would have written them: minute
    rows and hourly totals of each meter's `<counter>_consumed`, and each outdoor
    sensor's temperature (the hour's mean, for the degree-days). For trying the savings
    report on a store with a baseline year. Refused while a gateway holds the folder."""
    from gateway.datalock import DataFolderLock
    from gateway.metering import CONSUMED, CounterRegister, consumption_counters
    from gateway.store import Store, WriteBatch
    from gateway.store.downsample import MinuteAggregate

    site = load_site(site_path)
    sim = CompoundMeters(site, site_path.parent / "profiles", seed=seed)
    tz = ZoneInfo(site.site.timezone)
    t = dt.datetime.combine(start, dt.time(), tz).timestamp()
    stop = dt.datetime.combine(end, dt.time(), tz).timestamp()
    totals: list[tuple[str, str, str, float]] = []  # device, register metric, unit, first
    for meter in sim.meters.values():
        counters = [CounterRegister(r.metric, r.unit) for r in meter.sim.profile.registers
                    if r.kind == "counter"]
        for consumed in consumption_counters(counters):
            metric = consumed.removesuffix(CONSUMED)
            unit = meter.sim.profile.register(metric).unit
            totals.append((meter.device.id, metric, unit, meter.sim.values[metric]))
    sensors = [m.device.id for m in sim.meters.values() if m.device.kind == "temperature_sensor"]
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    lock = DataFolderLock(data_dir)
    lock.acquire()
    store = Store(data_dir / "gateway.db")
    store.open(asyncio.get_running_loop())
    written = 0
    try:
        sim.step(t)
        rows: list[MinuteAggregate] = []
        while t < stop:
            t += 3600.0
            sim.step(t, HISTORY_STEP_S)
            minute = int(t // 60) - 1  # the hour's last minute
            for device, metric, unit, first in totals:
                value = sim.meters[device].sim.values[metric] - first
                rows.append(MinuteAggregate(device, metric + CONSUMED, unit, minute, value,
                                            value, value, value, 1))
            middle = dt.datetime.fromtimestamp(t - 1800.0, tz)  # the hour's mean
            for device in sensors:
                c = outdoor_c(middle)
                rows.append(MinuteAggregate(device, "temperature_c", "°C", minute, c, c, c,
                                            c, 1))
            if len(rows) >= _HISTORY_BATCH or t >= stop:
                await store.submit(WriteBatch(minutes=rows))
                written += len(rows)
                rows = []
    finally:
        await store.close()
        lock.release()
    return written


async def start_meters(site_path: Path) -> CompoundMeters:
    """The site file's meters, started (for the demo)."""
    return await CompoundMeters(load_site(site_path), site_path.parent / "profiles").start()


async def _serve(args: argparse.Namespace) -> None:
    if args.history:
        first, _, last = args.history.partition(":")
        n = await write_history(Path(args.site), Path(args.data_dir),
                                dt.date.fromisoformat(first), dt.date.fromisoformat(last))
        print(f"wrote {n} hourly totals into {Path(args.data_dir) / 'gateway.db'}", flush=True)
        return
    meters = await start_meters(Path(args.site))
    for device, m3h in args.leak:
        meters.inject_leak(device, m3h)
    print(json.dumps({link: f"{host}:{port}" for link, (host, port) in
                      meters.addresses.items()}), flush=True)
    try:
        await meters.run()
    finally:
        await meters.stop()


def _leak(text: str) -> tuple[str, float]:
    device, _, m3h = text.partition(":")
    return device, float(m3h or SITE_LEAK_M3H)


def main(argv: Sequence[str] | None = None) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", default="config/site.yaml")
    parser.add_argument("--leak", type=_leak, action="append", default=[],
                        metavar="DEVICE[:M3H]", help="a leak on a water meter (repeatable)")
    parser.add_argument("--history", metavar="START:END",
                        help="write the meters' hourly totals for these site dates into the"
                             " store of --data-dir, then stop")
    parser.add_argument("--data-dir", default="data/demo")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
