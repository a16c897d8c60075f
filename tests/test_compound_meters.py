"""The simulated compound's meters: load curves of site time, counters that accumulate
along them, the measures taking effect on their date, the shipped site's meters served
per link; and a leak injected on the simulated water main, read by the real driver over
Modbus on a simulated clock, found by the leak rule on the second night above its
baseline (`nights: 2`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.modbus.config import redirected
from drivers.modbus.driver import MeterBinding, ModbusDriver
from drivers.modbus.profile import load_profile
from gateway.alerts import AlertSignal
from gateway.api.savings import parse_period
from gateway.config import load_site
from gateway.errors import Unreachable
from gateway.meters import SavingsDesk, meter_specs
from gateway.rules.water import LEAK, WaterMeterSpec, WaterParams, WaterRules
from gateway.savings_report import read_temperatures
from gateway.temperature_days import daily_means
from simulators.compound_meters import (
    CURVES,
    SITE_LEAK_M3H,
    CompoundMeters,
    LoadCurve,
    outdoor_c,
    typical_day_mean,
    write_history,
)
from tests.harness import ROOT
from tests.test_modbus_driver import Link, Sink

SITE = ROOT / "config" / "site.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _at(y: int, m: int, d: int, h: int, minute: int = 0) -> float:
    return dt.datetime(y, m, d, h, minute, tzinfo=SHANGHAI).timestamp()


@pytest.mark.parametrize(("when", "level"), [
    (dt.datetime(2026, 3, 4, 10), 9.5),  # Wednesday, office hours
    (dt.datetime(2026, 3, 4, 6, 59), 0.9),  # before them
    (dt.datetime(2026, 3, 4, 19), 0.9),  # after them
    (dt.datetime(2026, 3, 7, 10), 2.0),  # Saturday
    (dt.datetime(2026, 3, 8, 2), 0.9),  # Sunday night
])
def test_a_lighting_load_follows_site_time(when: dt.datetime, level: float) -> None:
    assert CURVES["lighting"].at(when.replace(tzinfo=SHANGHAI)) == level


def test_the_ac_plant_follows_the_degree_days_and_meals_their_hours() -> None:
    pumps = CURVES["ac_pumps"]
    # Mid-January (4.6 C, 13.4 degree-days) is full load; mid-October (18.8 C) a quarter.
    assert typical_day_mean(dt.date(2026, 1, 15)) == 4.6
    assert pumps.at(dt.datetime(2026, 1, 15, 10, tzinfo=SHANGHAI)) == pytest.approx(22.0)
    assert pumps.at(dt.datetime(2026, 10, 15, 10, tzinfo=SHANGHAI)) == pytest.approx(
        22.0 * (0.25 + 0.75 * 0.8 / 13.4))
    assert pumps.at(dt.datetime(2026, 7, 15, 10, tzinfo=SHANGHAI)) == pytest.approx(
        22.0 * (0.25 + 0.75 * 11.3 / 13.4))
    # The shipped temperature file is the same typical year, day by day.
    temps = read_temperatures(ROOT / "config" / "changsha-temperature.csv")
    assert all(temps[d] == typical_day_mean(d) for d in temps)
    assert min(temps) == dt.date(2025, 1, 1) and max(temps) == dt.date(2027, 12, 31)
    meals = LoadCurve(4.0, 0.0, busy=((6, 8), (10, 13)))
    assert [meals.at(dt.datetime(2026, 3, 4, h, tzinfo=SHANGHAI)) for h in (5, 7, 9, 12, 13)] \
        == [0.0, 4.0, 0.0, 4.0, 0.0]


def test_the_shipped_compound_with_its_measures_and_the_leak() -> None:
    sim = CompoundMeters(load_site(SITE), SITE.parent / "profiles", clock=time.time)
    assert len(sim.meters) == 30
    kinds = sorted({m.device.kind for m in sim.meters.values()})
    assert kinds == ["energy_meter", "gas_meter", "io_module", "temperature_sensor",
                     "water_meter"]
    light = sim.meters["em-main-lighting"]
    before = light.curve.at(dt.datetime(2025, 6, 4, 10, tzinfo=SHANGHAI))
    assert light.level(_at(2025, 6, 4, 10)) == pytest.approx(before, rel=0.035)
    # The LEDs from the measure's reporting start: 55 % of the old load.
    assert light.level(_at(2026, 6, 3, 10)) == pytest.approx(before * 0.55, rel=0.035)
    # The site's leak, shared by the two mains its measure mends.
    main = sim.meters["wm-main"]
    assert main.level(_at(2025, 12, 31, 3)) == pytest.approx(0.9 + SITE_LEAK_M3H / 2, rel=0.01)
    assert main.level(_at(2026, 1, 1, 3)) == pytest.approx(0.9, rel=0.035)  # mended
    assert sim.meters["wm-main-office-a"].level(_at(2026, 3, 4, 3)) == 0.0  # idles at night


def test_counters_accumulate_along_the_curve() -> None:
    sim = CompoundMeters(load_site(SITE), SITE.parent / "profiles", clock=time.time)
    meter = sim.meters["em-main-lighting-b"]  # not in a measure before 2026
    start = meter.sim.values["energy_import_kwh"]
    sim.step(_at(2025, 3, 5, 0))  # a Wednesday
    sim.step(_at(2025, 3, 6, 0))
    # 12 h at 9.5 kW and 12 h at 0.9 kW, +/- 3 % noise.
    assert meter.sim.values["energy_import_kwh"] - start == pytest.approx(124.8, rel=0.03)
    assert meter.sim.values["power_w"] == pytest.approx(900.0, rel=0.035)
    water = sim.meters["wm-main"]
    assert water.sim.values["flow_m3h"] == pytest.approx(0.9 + SITE_LEAK_M3H / 2, rel=0.01)


async def test_the_whole_compound_is_served_per_link() -> None:
    sim = await CompoundMeters(load_site(SITE), SITE.parent / "profiles").start()
    try:
        assert sorted(sim.addresses) == [
            "rtu+tcp://198.51.100.40:4001", "rtu:///dev/ttyUSB0", "tcp://198.51.100.30:502",
            "tcp://198.51.100.41:502"]
        assert {s.rtu for s in sim.servers.values()} == {True, False}
        assert sim.servers["rtu:///dev/ttyUSB0"].rtu
        assert len(sim.servers["rtu:///dev/ttyUSB0"].meters) == 13
    finally:
        await sim.stop()


async def test_the_outdoor_sensor_is_read_by_the_driver_over_the_plant_room_line() -> None:
    """The shipped site's temperature transmitter, simulated on the plant room's RS-485
    line (RTU framing), polled by the real driver: the day's temperature, with its
    diurnal swing, and humidity, decoded from the profile's fixed-point words."""
    site = load_site(SITE)
    device = next(d for d in site.devices_of("modbus") if d.kind == "temperature_sensor")
    t = _at(2026, 1, 15, 5)  # a January dawn: the day's mean less the swing
    clock = SimulatedClock(t)
    sim = await CompoundMeters(site, SITE.parent / "profiles", clock=clock.now).start()
    host, port = sim.addresses[device.endpoint.link]
    fast = device.model_copy(update={"poll_s": 0.1})
    binding = MeterBinding(redirected(fast, host, port),
                           load_profile(SITE.parent / "profiles" / f"{device.profile}.yaml"))
    sink = Sink()
    driver = ModbusDriver("modbus:plant-room", [binding], sink, clock=clock)
    task = asyncio.create_task(driver.run(Link()))
    try:
        async with asyncio.timeout(10):
            while {r.metric for r in sink.readings} < {"temperature_c", "humidity_pct"}:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Unreachable):
            await task
        await sim.stop()
    got = {r.metric: r.value for r in sink.readings}
    want = outdoor_c(dt.datetime.fromtimestamp(t, SHANGHAI))
    assert want == pytest.approx(1.43, abs=0.01)  # 4.6 C mean, 3.2 K below it at 05:00
    assert got["temperature_c"] == pytest.approx(want, abs=0.05)  # one decimal on the wire
    assert 0 < got["humidity_pct"] <= 100
    assert not sink.rejects


# --- a leak through the simulator, the driver and the rule -----------------------------


class SimulatedClock:
    """Wall-clock time set by the test (the nights); monotonic time is real, so the
    driver's polls keep their pace."""

    def __init__(self, now: float) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return time.monotonic()


WATER_SITE = """\
site: {id: furong-test, name: Furong test, timezone: Asia/Shanghai}
buildings:
  - id: main
    name: main compound
    zones:
      - {id: main-plant-room, name: plant room}
devices:
  - {driver: modbus, id: wm-main, kind: water_meter, zone: main-plant-room,
     address: "rtu:///dev/ttyUSB0?baud=9600&unit=3", profile: water-meter, poll_s: 0.1,
     timeout_s: 0.5, system: water_main}
"""


async def test_a_leak_injected_on_the_simulated_main_is_found_on_the_second_night(
    tmp_path: Path,
) -> None:
    site_path = tmp_path / "site.yaml"
    site_path.write_text(WATER_SITE)
    site = load_site(site_path)
    first = dt.date(2026, 3, 2)
    clock = SimulatedClock(_at(2026, 3, 2, 0))
    sim = await CompoundMeters(site, ROOT / "config" / "profiles", clock=clock.now).start()
    (device,) = site.devices_of("modbus")
    host, port = sim.addresses[device.endpoint.link]
    binding = MeterBinding(redirected(device, host, port),
                           load_profile(ROOT / "config" / "profiles" / "water-meter.yaml"))
    sink, link = Sink(), Link()
    driver = ModbusDriver("modbus:water", [binding], sink, clock=clock)
    rules = WaterRules(WaterParams(nights=2, minimum_history=2), [
        WaterMeterSpec("wm-main", "main-plant-room", "main")], timezone="Asia/Shanghai")
    signals: list[tuple[dt.date, AlertSignal]] = []
    task = asyncio.create_task(driver.run(link))
    try:
        for night in range(4):
            day = first + dt.timedelta(days=night)
            if night == 2:
                sim.inject_leak("wm-main", SITE_LEAK_M3H)
            # Every 20 minutes of site time from 01:40 to 05:20: the meter moves on, the
            # driver reads it at that time, the rule sees the reading and the clock.
            for step in range(12):
                t = _at(day.year, day.month, day.day, 1, 40) + step * 1200
                clock.t = t
                sim.step(t)
                seen = len(sink.readings)
                async with asyncio.timeout(10):
                    while not any(r.time == t and r.metric == "flow_m3h"
                                  for r in sink.readings[seen:]):
                        await asyncio.sleep(0.01)
                for r in sink.readings[seen:]:
                    rules.observe(r, t)
                signals += [(day, s) for s in rules.tick(t) if isinstance(s, AlertSignal)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Unreachable):
            await task
        await sim.stop()
    assert [(day, s.rule, s.active) for day, s in signals] == [
        (first + dt.timedelta(days=3), LEAK, True)]
    leak = signals[0][1]
    assert leak.data["mnf_m3h"] == pytest.approx(0.9 + SITE_LEAK_M3H, rel=0.04)
    assert leak.data["baseline_m3h"] == pytest.approx(0.9, rel=0.04)
    assert not sink.rejects


async def test_the_simulated_compound_shows_the_savings_the_site_promised(
    tmp_path: Path,
) -> None:
    """Fifteen months of the shipped site's meters written into a store as the daemon
    writes them, then each measure's report: every baseline model meets Guideline 14 (the
    AC plant's through its degree-days) and each saving is of the order the compound's
    report promised (LED lighting and the AC pumps ~100k yuan a year, the mains ~150k)."""
    await write_history(SITE, tmp_path, dt.date(2025, 1, 1), dt.date(2026, 4, 1))
    site = load_site(SITE)
    specs = {s.meter: s for s in meter_specs(site, SITE.parent / "profiles")}
    desk = SavingsDesk(site, SITE, tmp_path / "gateway.db", specs)
    reporting = parse_period("2026-01-01:2026-04-01")
    yearly = {}
    for measure in site.energy.measures:
        data = await desk.report_async(measure.id, None, reporting)
        for part in data["parts"]:
            assert part["fit"]["acceptable"], (measure.id, part["quantity"], part["fit"])
            assert part["saving"] > 0, (measure.id, part["quantity"])
        yearly[measure.id] = (data["saving_yuan_per_year"], data["expected_yuan_per_year"])
    for measure_id, (got, promised) in yearly.items():
        assert 0.6 * promised < got < 1.6 * promised, (measure_id, got, promised)
    # The AC pumps save power, gas and make-up water, each at its own tariff.
    ac = await desk.report_async("ac-pumps", None, reporting)
    assert [p["quantity"] for p in ac["parts"]] == ["energy", "water", "gas"]
    assert ac["parts"][0]["model"]["driver"] == "degree_days"
    # Its degree-days came from the outdoor sensor's hours in the store: a day's mean of
    # them is the typical day's, the swing averaging out.
    sensor = site.energy.measure("ac-pumps").degree_days
    assert sensor is not None and sensor.sensor is not None
    with sqlite3.connect(tmp_path / "gateway.db") as conn:
        means = daily_means(conn, sensor.sensor, dt.date(2025, 1, 1), dt.date(2026, 4, 1),
                            SHANGHAI)
    assert len(means) == 365 + 90
    for day in (dt.date(2025, 1, 15), dt.date(2025, 7, 20), dt.date(2026, 3, 31)):
        assert means[day] == pytest.approx(typical_day_mean(day), abs=0.01)
