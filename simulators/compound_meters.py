"""The compound's meters, simulated from the site file: one pymodbus server per link the
site file names (a TCP meter or gateway, a serial server, an RS-485 line, which is served
with RTU framing on TCP), each unit built from its profile.

Every meter follows a load curve of site time (office hours, nights, weekends, the AC's
seasons) and its counters accumulate along it. A measure of the site file
(`energy.measures`) takes effect on its reporting start: the lighting circuits drop to
LED load, the AC pumps and their gas and make-up water drop, the water main's leak is
mended. A leak can be injected on any water meter.

    python -m simulators.compound_meters --site config/site.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
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

# AC load by month (Changsha: hot summers, cold damp winters, mild spring and autumn).
AC_SEASON = {1: 0.7, 2: 0.65, 3: 0.35, 4: 0.3, 5: 0.55, 6: 0.9, 7: 1.0, 8: 1.0, 9: 0.8,
             10: 0.4, 11: 0.35, 12: 0.65}
# Gas for the boilers: heating in winter, little else.
HEATING_SEASON = {1: 1.0, 2: 0.95, 3: 0.6, 4: 0.25, 5: 0.1, 6: 0.1, 7: 0.1, 8: 0.1, 9: 0.1,
                  10: 0.2, 11: 0.55, 12: 0.9}


@dataclass(frozen=True, slots=True)
class LoadCurve:
    """A level (kW, m3/h or Nm3/h) by site time: `day` inside the busy hours of a
    weekday, `night` outside them, the weekend's own levels, and a monthly factor."""

    day: float
    night: float
    weekend_day: float | None = None
    weekend_night: float | None = None
    busy: tuple[tuple[int, int], ...] = ((7, 19),)  # [start hour, end hour)
    season: dict[int, float] | None = None

    def at(self, local: dt.datetime) -> float:
        busy = any(a <= local.hour < b for a, b in self.busy)
        if local.weekday() >= 5:
            day = self.weekend_day if self.weekend_day is not None else self.day
            night = self.weekend_night if self.weekend_night is not None else self.night
        else:
            day, night = self.day, self.night
        level = day if busy else night
        return level * (self.season[local.month] if self.season else 1.0)


# The compound's loads, by (kind, system); a device's id picks a variant where it says.
CURVES: dict[str, LoadCurve] = {
    "main": LoadCurve(210.0, 45.0, 80.0, 40.0),
    "lighting": LoadCurve(16.0, 1.5, 3.5, 1.5),
    "lighting-outdoor": LoadCurve(0.4, 7.5, 0.4, 7.5, busy=((6, 18),)),
    "lighting-parking": LoadCurve(6.0, 6.0),
    "ac_pumps": LoadCurve(42.0, 9.0, 14.0, 7.0, season=AC_SEASON),
    "power_room": LoadCurve(12.0, 6.0, 8.0, 6.0),
    "water_main": LoadCurve(13.0, 0.9, 5.0, 0.9, busy=((6, 22),)),
    "water_sub": LoadCurve(2.2, 0.0, 0.4, 0.0, busy=((7, 20),)),
    "water_sub-canteen": LoadCurve(4.0, 0.0, 1.0, 0.0, busy=((6, 8), (10, 13), (16, 19))),
    "water_sub-garden": LoadCurve(1.2, 0.0, busy=((6, 7),)),
    "water_ac": LoadCurve(1.6, 0.3, 0.8, 0.3, season=AC_SEASON),
    "gas": LoadCurve(55.0, 12.0, 25.0, 10.0, season=HEATING_SEASON),
    "gas-canteen": LoadCurve(14.0, 0.4, 4.0, 0.4, busy=((6, 8), (10, 13), (16, 19))),
}
# What a measure leaves of a load from its reporting start.
AFTER_MEASURE = {"lighting": 0.55, "ac_pumps": 0.72, "gas": 0.8, "water_ac": 0.8}


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

    def step(self, start: float, end: float) -> None:
        """Move from `start` to `end`: counters grow by the load, gauges show its end."""
        t = start
        while t < end:
            dt_s = min(STEP_S, end - t)
            self._show(self.level(t + dt_s / 2), dt_s / 3600.0)
            t += dt_s
        if end <= start:
            self._show(self.level(end), 0.0)

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
        self.meters: dict[str, CompoundMeter] = {}
        self._links: dict[str, tuple[bool, list[SimulatedMeter]]] = {}
        profiles = {}
        for device in site.devices_of("modbus"):
            if device.kind not in ("energy_meter", "water_meter", "gas_meter", "io_module"):
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
                meter.leak_m3h, meter.mended_on = SITE_LEAK_M3H, start
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

    def step(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        start = now if self._last is None else self._last
        for meter in self.meters.values():
            meter.step(start, now)
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


async def start_meters(site_path: Path) -> CompoundMeters:
    """The site file's meters, started (for the demo)."""
    return await CompoundMeters(load_site(site_path), site_path.parent / "profiles").start()


async def _serve(args: argparse.Namespace) -> None:
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
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
