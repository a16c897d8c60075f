"""The simulated compound's meters: load curves of site time, counters that accumulate
along them, the measures taking effect on their date, the shipped site's meters served
per link; and a leak injected on the simulated water main, read by the real driver over
Modbus on a simulated clock, found by the leak rule on the third night."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.modbus.config import redirected
from drivers.modbus.driver import MeterBinding, ModbusDriver
from drivers.modbus.profile import load_profile
from gateway.alerts import AlertSignal
from gateway.config import load_site
from gateway.errors import Unreachable
from gateway.rules.water import LEAK, WaterMeterSpec, WaterParams, WaterRules
from simulators.compound_meters import CURVES, SITE_LEAK_M3H, CompoundMeters, LoadCurve
from tests.harness import ROOT
from tests.test_modbus_driver import Link, Sink

SITE = ROOT / "config" / "site.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _at(y: int, m: int, d: int, h: int, minute: int = 0) -> float:
    return dt.datetime(y, m, d, h, minute, tzinfo=SHANGHAI).timestamp()


@pytest.mark.parametrize(("when", "level"), [
    (dt.datetime(2026, 3, 4, 10), 16.0),  # Wednesday, office hours
    (dt.datetime(2026, 3, 4, 6, 59), 1.5),  # before them
    (dt.datetime(2026, 3, 4, 19), 1.5),  # after them
    (dt.datetime(2026, 3, 7, 10), 3.5),  # Saturday
    (dt.datetime(2026, 3, 8, 2), 1.5),  # Sunday night
])
def test_a_lighting_load_follows_site_time(when: dt.datetime, level: float) -> None:
    assert CURVES["lighting"].at(when.replace(tzinfo=SHANGHAI)) == level


def test_seasons_and_busy_hours() -> None:
    pumps = CURVES["ac_pumps"]
    assert pumps.at(dt.datetime(2026, 7, 8, 10, tzinfo=SHANGHAI)) == 42.0
    assert pumps.at(dt.datetime(2026, 4, 8, 10, tzinfo=SHANGHAI)) == pytest.approx(42.0 * 0.3)
    meals = LoadCurve(4.0, 0.0, busy=((6, 8), (10, 13)))
    assert [meals.at(dt.datetime(2026, 3, 4, h, tzinfo=SHANGHAI)) for h in (5, 7, 9, 12, 13)] \
        == [0.0, 4.0, 0.0, 4.0, 0.0]


def test_the_shipped_compound_with_its_measures_and_the_leak() -> None:
    sim = CompoundMeters(load_site(SITE), SITE.parent / "profiles", clock=time.time)
    assert len(sim.meters) == 29
    kinds = sorted({m.device.kind for m in sim.meters.values()})
    assert kinds == ["energy_meter", "gas_meter", "io_module", "water_meter"]
    light = sim.meters["em-main-lighting"]
    before = light.curve.at(dt.datetime(2025, 6, 4, 10, tzinfo=SHANGHAI))
    assert light.level(_at(2025, 6, 4, 10)) == pytest.approx(before, rel=0.035)
    # The LEDs from the measure's reporting start: 55 % of the old load.
    assert light.level(_at(2026, 6, 3, 10)) == pytest.approx(before * 0.55, rel=0.035)
    main = sim.meters["wm-main"]
    assert main.level(_at(2025, 12, 31, 3)) == pytest.approx(0.9 + SITE_LEAK_M3H, rel=0.01)
    assert main.level(_at(2026, 1, 1, 3)) == pytest.approx(0.9, rel=0.035)  # mended
    assert sim.meters["wm-main-office-a"].level(_at(2026, 3, 4, 3)) == 0.0  # idles at night


def test_counters_accumulate_along_the_curve() -> None:
    sim = CompoundMeters(load_site(SITE), SITE.parent / "profiles", clock=time.time)
    meter = sim.meters["em-main-lighting-b"]  # not in a measure before 2026
    start = meter.sim.values["energy_import_kwh"]
    sim.step(_at(2025, 3, 5, 0))  # a Wednesday
    sim.step(_at(2025, 3, 6, 0))
    # 12 h at 16 kW and 12 h at 1.5 kW, +/- 3 % noise.
    assert meter.sim.values["energy_import_kwh"] - start == pytest.approx(210.0, rel=0.03)
    assert meter.sim.values["power_w"] == pytest.approx(1500.0, rel=0.035)
    water = sim.meters["wm-main"]
    assert water.sim.values["flow_m3h"] == pytest.approx(0.9 + SITE_LEAK_M3H, rel=0.01)


async def test_the_whole_compound_is_served_per_link() -> None:
    sim = await CompoundMeters(load_site(SITE), SITE.parent / "profiles").start()
    try:
        assert sorted(sim.addresses) == [
            "rtu+tcp://198.51.100.40:4001", "rtu:///dev/ttyUSB0", "tcp://198.51.100.30:502",
            "tcp://198.51.100.41:502"]
        assert {s.rtu for s in sim.servers.values()} == {True, False}
        assert sim.servers["rtu:///dev/ttyUSB0"].rtu
        assert len(sim.servers["rtu:///dev/ttyUSB0"].meters) == 12
    finally:
        await sim.stop()


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


async def test_a_leak_injected_on_the_simulated_main_is_found_on_the_third_night(
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
    rules = WaterRules(WaterParams(nights=3, minimum_history=3), [
        WaterMeterSpec("wm-main", "main-plant-room", "main")], timezone="Asia/Shanghai")
    signals: list[tuple[dt.date, AlertSignal]] = []
    task = asyncio.create_task(driver.run(link))
    try:
        for night in range(7):
            day = first + dt.timedelta(days=night)
            if night == 4:
                sim.inject_leak("wm-main", SITE_LEAK_M3H)
            # Every 15 minutes of site time from 01:45 to 05:15: the meter moves on, the
            # driver reads it at that time, the rule sees the reading and the clock.
            for step in range(15):
                t = _at(day.year, day.month, day.day, 1, 45) + step * 900
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
        (first + dt.timedelta(days=6), LEAK, True)]
    leak = signals[0][1]
    assert leak.data["mnf_m3h"] == pytest.approx(0.9 + SITE_LEAK_M3H, rel=0.04)
    assert leak.data["baseline_m3h"] == pytest.approx(0.9, rel=0.04)
    assert not sink.rejects
