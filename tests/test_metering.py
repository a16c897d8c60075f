"""Energy, water and gas figures: per meter and rolled up per building and system, from
tables; then through the daemon against the simulated meters (Prometheus families,
downsampled minutes in the store), and consumption continuous across a restart of the
daemon, rebuilt from SQLite on disk."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from gateway.app import Gateway
from gateway.config import load_site
from gateway.events import Reading
from gateway.metering import (
    CounterRegister,
    Metering,
    MeterSpec,
    Quantity,
    consumption_counters,
    rate_gauges,
)
from gateway.meters import meter_specs
from simulators.modbus_meters import MeterServer, SimulatedMeter, meter
from tests.harness import ROOT, plant_room_site, running_gateway

E, W, G = Quantity.ENERGY, Quantity.WATER, Quantity.GAS

SPECS = [
    MeterSpec("em-main", "main", "main", {"energy_import_kwh_consumed": E},
              {"power_w": (E, 0.001)}),
    MeterSpec("em-light-a", "main", "lighting", {"energy_import_kwh_consumed": E},
              {"power_w": (E, 0.001)}),
    MeterSpec("em-light-b", "main", "lighting", {"energy_import_kwh_consumed": E},
              {"power_w": (E, 0.001)}),
    MeterSpec("em-health-light", "health", "lighting", {"energy_import_kwh_consumed": E}),
    MeterSpec("wm-main", "main", "water_main", {"water_total_m3_consumed": W},
              {"flow_m3h": (W, 1.0)}),
    MeterSpec("gm-plant", "main", "gas", {"gas_total_nm3_consumed": G},
              {"gas_flow_nm3h": (G, 1.0)}),
]


def _scrape(metering: Metering) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(metering)
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_consumption_counter_is_the_first_import_counter_of_each_unit() -> None:
    counters = [CounterRegister("energy_import_kwh", "kWh"),
                CounterRegister("energy_export_kwh", "kWh"),
                CounterRegister("energy_import_t2_kwh", "kWh"),
                CounterRegister("water_total_m3", "m3"), CounterRegister("run_hours", "h")]
    assert consumption_counters(counters) == {"energy_import_kwh_consumed": E,
                                              "water_total_m3_consumed": W}
    assert consumption_counters([CounterRegister("energy_export_kwh", "kWh")]) == {}
    assert rate_gauges([("voltage_l1_v", "V"), ("power_w", "W"), ("flow_m3h", "m3/h"),
                        ("gas_flow_nm3h", "Nm3/h")]) == {
        "power_w": (E, 0.001), "flow_m3h": (W, 1.0), "gas_flow_nm3h": (G, 1.0)}


def test_totals_rates_and_rollups_from_a_table() -> None:
    m = Metering(SPECS)
    table = [  # (meter, metric, value)
        ("em-main", "energy_import_kwh_consumed", 120.0),
        ("em-main", "power_w", 41_500.0),
        ("em-light-a", "energy_import_kwh_consumed", 30.0),
        ("em-light-b", "energy_import_kwh_consumed", 12.5),
        ("em-light-b", "power_w", 2_000.0),
        ("em-health-light", "energy_import_kwh_consumed", 7.0),
        ("wm-main", "water_total_m3_consumed", 55.25),
        ("wm-main", "flow_m3h", 4.5),
        ("gm-plant", "gas_total_nm3_consumed", 300.0),
        ("gm-plant", "gas_flow_nm3h", 18.0),
        ("em-main", "voltage_l1_v", 231.0),  # not a figure: ignored
        ("hd-main-01", "temp_c", 24.0),  # not a meter: ignored
        ("em-main", "power_w", float("nan")),  # never a figure
        ("wm-main", "water_total_m3_consumed", float("inf")),
    ]
    for source, metric, value in table:
        m.observe(Reading(source, metric, value, "", 0.0))
    got = _scrape(m)
    assert got['gateway_meter_energy_kwh_total{building="main",meter="em-main",system="main"}'] \
        == 120.0
    assert got['gateway_meter_power_kw{building="main",meter="em-main",system="main"}'] == 41.5
    assert got['gateway_meter_energy_kwh_total{building="main",meter="em-light-a",'
               'system="lighting"}'] == 30.0
    assert got['gateway_consumption_energy_kwh_total{building="main",system="lighting"}'] \
        == 42.5
    assert got['gateway_consumption_energy_kwh_total{building="main",system="main"}'] == 120.0
    assert got['gateway_consumption_energy_kwh_total{building="health",system="lighting"}'] \
        == 7.0
    assert got['gateway_consumption_water_m3_total{building="main",system="water_main"}'] \
        == 55.25
    assert got['gateway_meter_water_flow_m3h{building="main",meter="wm-main",'
               'system="water_main"}'] == 4.5
    assert got['gateway_consumption_gas_nm3_total{building="main",system="gas"}'] == 300.0
    assert got['gateway_meter_gas_flow_nm3h{building="main",meter="gm-plant",system="gas"}'] \
        == 18.0
    assert not any("voltage" in k or "hd-main" in k for k in got)
    assert m.total("em-light-a", E) == 30.0
    assert m.total("wm-main", E) is None


def test_restored_totals_show_before_the_first_reading() -> None:
    m = Metering(SPECS)
    m.restore({("em-main", "energy_import_kwh_consumed"): 500.0,
               ("em-main", "power_w"): 9.0,  # a rate is not restored
               ("em-unknown", "energy_import_kwh_consumed"): 1.0})
    got = _scrape(m)
    assert got['gateway_meter_energy_kwh_total{building="main",meter="em-main",system="main"}'] \
        == 500.0
    assert not any(k.startswith("gateway_meter_power_kw{") for k in got)
    m.observe(Reading("em-main", "energy_import_kwh_consumed", 501.5, "kWh", 2.0))
    assert m.total("em-main", E) == 501.5
    # A driver that found no state in the store counts from 0: a counter reset, which
    # Prometheus' increase() reads as such (never as a negative consumption).
    m.observe(Reading("em-main", "energy_import_kwh_consumed", 0.25, "kWh", 3.0))
    assert m.total("em-main", E) == 0.25
    # Every building and system with a meter is in the rollup, unread ones at 0.
    assert m.rollup()[(W, "main", "water_main")] == 0.0


def test_the_shipped_site_meters_have_bounded_labels() -> None:
    site_path = ROOT / "config" / "site.yaml"
    site = load_site(site_path)
    specs = meter_specs(site, site_path.parent / "profiles")
    assert len(specs) == 28
    assert {s.building for s in specs} == {b.id for b in site.buildings}
    assert {s.system for s in specs} == {"main", "lighting", "ac_pumps", "water_main",
                                         "water_sub", "gas", "power_room"}
    assert all(len(s.totals) == 1 for s in specs)  # one consumption counter each
    m = Metering(specs)
    quantities = {q for q, _, _ in m.rollup()}
    assert quantities == {E, W, G}


# --- through the daemon ------------------------------------------------------------------


def _site(folder: Path, port: int) -> Path:
    path = plant_room_site(folder, f"""\
  - {{driver: modbus, id: em-lighting, kind: energy_meter, zone: main-plant-room,
     address: "tcp://127.0.0.1:{port}/1", profile: eastron-sdm630, poll_s: 0.2,
     system: lighting, breaker_a: 10000}}
  - {{driver: modbus, id: wm-main, kind: water_meter, zone: main-plant-room,
     address: "tcp://127.0.0.1:{port}/3", profile: water-meter, poll_s: 0.2,
     system: water_main}}
""")
    return path


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
        return body.decode()


def _value(page: str, name: str) -> float | None:
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.rpartition(" ")[2])
    return None


ENERGY = 'gateway_meter_energy_kwh_total{building="main",meter="em-lighting",system="lighting"}'
LIGHTING = 'gateway_consumption_energy_kwh_total{building="main",system="lighting"}'


def _consumed(db: Path, source: str, metric: str) -> float:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT last FROM readings WHERE source = ? AND metric = ?"
                           " ORDER BY minute DESC LIMIT 1", [source, metric]).fetchone()
    assert row is not None, (source, metric)
    return float(row[0])


async def _wait_for(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while not predicate():
            await asyncio.sleep(0.05)


async def _both_read(gateway: Gateway) -> None:
    """Each meter read once (units start staggered): later changes are consumption."""
    await _wait_for(lambda: None not in (gateway.metering.total("em-lighting", Quantity.ENERGY),
                                         gateway.metering.total("wm-main", Quantity.WATER)))


async def _count_up(gateway: Gateway, sim: SimulatedMeter, kwh: float) -> None:
    """Add `kwh` to the meter's counter in steps its breaker allows between two polls
    (a jump beyond that is flagged, never summed), each step read before the next."""
    start = gateway.metering.total("em-lighting", Quantity.ENERGY) or 0.0
    steps = round(kwh / 0.25)
    for n in range(1, steps + 1):
        sim.values["energy_import_kwh"] += 0.25

        def counted(n: int = n) -> bool:
            total = gateway.metering.total("em-lighting", Quantity.ENERGY)
            return total is not None and total >= start + 0.25 * n - 1e-6

        await _wait_for(counted)


async def test_figures_reach_prometheus_and_minutes_reach_the_store(tmp_path: Path) -> None:
    light, water = meter("eastron-sdm630", 1), meter("water-meter", 3)
    async with MeterServer([light, water]) as server:
        site = _site(tmp_path, server.port)
        async with running_gateway(site) as gateway:
            base = f"http://127.0.0.1:{gateway.http_port}"
            await _both_read(gateway)
            water.values["water_total_m3"] += 0.04
            water.values["flow_m3h"] = 4.25
            await _count_up(gateway, light, 2.5)

            def flowed() -> bool:
                total = gateway.metering.total("wm-main", Quantity.WATER)
                return total is not None and total == pytest.approx(0.04, abs=2e-3)

            await _wait_for(flowed)
            page = await asyncio.to_thread(_get, f"{base}/metrics")
            db = gateway.db_path
    assert _value(page, ENERGY) == pytest.approx(2.5)
    assert _value(page, LIGHTING) == pytest.approx(2.5)
    assert _value(page, 'gateway_meter_power_kw{building="main",meter="em-lighting",'
                        'system="lighting"}') == pytest.approx(8.2)
    assert _value(page, 'gateway_meter_water_flow_m3h{building="main",meter="wm-main",'
                        'system="water_main"}') == pytest.approx(4.25)
    assert _value(page, 'gateway_consumption_water_m3_total{building="main",'
                        'system="water_main"}') == pytest.approx(0.04, abs=2e-3)
    # Downsampled: one row per meter, metric and minute, many polls folded into each.
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT minute, min, max, avg, last, count FROM readings"
            " WHERE source = 'em-lighting' AND metric = 'power_w'").fetchall()
        per_minute = conn.execute(
            "SELECT count(*), count(DISTINCT source || metric || minute) FROM readings"
        ).fetchone()
    assert rows and sum(r[5] for r in rows) > len(rows)
    for _minute, low, high, avg, last, _count in rows:
        assert low <= avg <= high and low <= last <= high
    assert per_minute[0] == per_minute[1]


async def test_consumption_is_continuous_across_a_restart_of_the_daemon(
    tmp_path: Path,
) -> None:
    light = meter("eastron-sdm630", 1)
    water = meter("water-meter", 3)
    async with MeterServer([light, water]) as server:
        site = _site(tmp_path, server.port)
        async with running_gateway(site) as gateway:
            await _both_read(gateway)
            await _count_up(gateway, light, 4.0)
            db = gateway.db_path
        # Stopped: the minute being aggregated was flushed to SQLite on disk.
        before = _consumed(db, "em-lighting", "energy_import_kwh_consumed")
        assert before == pytest.approx(4.0)
        # While the daemon is down the meter goes on counting.
        light.values["energy_import_kwh"] += 0.5
        async with running_gateway(site) as gateway:
            base = f"http://127.0.0.1:{gateway.http_port}"
            # Its figures come back from the store before the meter is read again...
            assert gateway.metering.total("em-lighting", Quantity.ENERGY) is not None

            def second() -> bool:
                total = gateway.metering.total("em-lighting", Quantity.ENERGY)
                return total is not None and total >= 4.5 - 1e-6

            await _wait_for(second)
            await _count_up(gateway, light, 1.5)
            page = await asyncio.to_thread(_get, f"{base}/metrics")
    # ... and the total carries on from there: nothing lost, nothing counted twice.
    assert _value(page, ENERGY) == pytest.approx(6.0)
    assert _consumed(db, "em-lighting", "energy_import_kwh_consumed") == pytest.approx(6.0)
    with sqlite3.connect(db) as conn:
        series = [r[0] for r in conn.execute(
            "SELECT last FROM readings WHERE source = 'em-lighting'"
            " AND metric = 'energy_import_kwh_consumed' ORDER BY minute")]
    assert series == sorted(series)
