"""The savings report per measure: months of site time, consumption from the store's
minute rows, the degree-day baseline, Guideline 14's verdict and the saving in kWh, m3
and yuan, from tables with known answers; then through the store on disk, the CLI and
the desk API."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import sqlite3
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cli import main as cli_main
from gateway.energy_config import DegreeDays, Measure, Period, Tariffs
from gateway.metering import MeterSpec, Quantity
from gateway.savings_report import (
    SavingsError,
    buckets,
    degree_days,
    hourly_from,
    read_temperatures,
    render,
    report,
)
from gateway.store import Retention, Store, WriteBatch
from gateway.store.downsample import MinuteAggregate
from gateway.store.queries import hourly_consumption
from gateway.store.schema import migrate
from simulators.modbus_meters import MeterServer, meter
from tests.harness import plant_room_site, running_gateway

TZ = "Asia/Shanghai"
SHANGHAI = ZoneInfo(TZ)
E, W, G = Quantity.ENERGY, Quantity.WATER, Quantity.GAS
SPECS = {
    "em-light": MeterSpec("em-light", "main", "lighting", {"energy_import_kwh_consumed": E}),
    "em-light-2": MeterSpec("em-light-2", "health", "lighting",
                            {"energy_import_kwh_consumed": E}),
    "em-pumps": MeterSpec("em-pumps", "main", "ac_pumps", {"energy_import_kwh_consumed": E}),
    "gm-plant": MeterSpec("gm-plant", "main", "gas", {"gas_total_nm3_consumed": G}),
    "wm-main": MeterSpec("wm-main", "main", "water_main", {"water_total_m3_consumed": W}),
}
TARIFFS = Tariffs(electricity_yuan_kwh=0.85, water_yuan_m3=4.6, gas_yuan_nm3=3.9)
YEAR_2025 = Period(start=dt.date(2025, 1, 1), end=dt.date(2026, 1, 1))
YEAR_2026 = Period(start=dt.date(2026, 1, 1), end=dt.date(2027, 1, 1))
# The reports of the tables are made after their periods are over.
NOW = dt.datetime(2027, 2, 1, tzinfo=SHANGHAI).timestamp()


def _mid_month_hour(year: int, month: int) -> int:
    return int(dt.datetime(year, month, 15, 12, tzinfo=SHANGHAI).timestamp() // 3600)


def _monthly(table: Mapping[str, Mapping[tuple[int, int], float]]):  # type: ignore[no-untyped-def]
    """An `Hourly` seam from a table: meter -> (year, month) -> consumption in that month,
    all of it in one hour mid-month."""
    def hourly(source: str, metric: str, start: int, end: int
               ) -> dict[int, tuple[float, int | None]]:
        out: dict[int, tuple[float, int | None]] = {}
        for (year, month), value in table.get(source, {}).items():
            hour = _mid_month_hour(year, month)
            if start <= hour * 60 < end:
                out[hour] = (value, hour - 1)  # read every hour
        return out
    return hourly


def _measure(meters: list[str], **kw: object) -> Measure:
    return Measure.model_validate({"id": "m", "name": "A measure", "meters": meters,
                                   "baseline": YEAR_2025, "reporting": YEAR_2026, **kw})


def test_months_are_site_time_and_a_period_cut_mid_month_is_cut() -> None:
    got = buckets(Period(start=dt.date(2026, 1, 20), end=dt.date(2026, 4, 1)), "monthly",
                  SHANGHAI)
    assert [b.label for b in got] == ["2026-01", "2026-02", "2026-03"]
    # 00:00 in Changsha is 16:00 UTC the day before.
    assert dt.datetime.fromtimestamp(got[1].start, dt.UTC).isoformat() == \
        "2026-01-31T16:00:00+00:00"
    assert got[0].end - got[0].start == 12 * 86_400
    hours = buckets(Period(start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 3)), "hourly",
                    SHANGHAI)
    assert len(hours) == 48 and hours[0].label == "2026-01-01T00"


def test_led_lighting_saving_with_a_known_cv_rmse() -> None:
    # Twelve baseline months 10,000 +/- 200 kWh over two circuits; 6,000 a month after the
    # LEDs: 48,000 kWh avoided at 0.85 yuan/kWh is 40,800 yuan.
    base = {(2025, m): 10_000.0 + (200.0 if m % 2 else -200.0) for m in range(1, 13)}
    table = {"em-light": {k: v * 0.75 for k, v in base.items()},
             "em-light-2": {k: v * 0.25 for k, v in base.items()}}
    for m in range(1, 13):
        table["em-light"][(2026, m)] = 4_500.0
        table["em-light-2"][(2026, m)] = 1_500.0
    data = report(_measure(["em-light", "em-light-2"], expected_yuan_per_year=100_000),
                  SPECS, _monthly(table), tariffs=TARIFFS, timezone=TZ, now=NOW)
    [part] = data["parts"]
    assert part["quantity"] == "energy" and part["unit"] == "kWh"
    assert [row["consumption"] for row in part["baseline"]] == pytest.approx(
        [base[(2025, m)] for m in range(1, 13)])
    assert part["fit"]["cv_rmse"] == pytest.approx(math.sqrt(12 * 200.0**2 / 11) / 10_000)
    assert part["fit"]["nmbe"] == pytest.approx(0.0, abs=1e-12)
    assert part["fit"]["acceptable"] is True
    assert part["saving"] == pytest.approx(48_000.0)
    assert part["saving_yuan"] == pytest.approx(40_800.0)
    assert data["saving_yuan_per_year"] == pytest.approx(40_800.0)
    text = render(data)
    assert "meets ASHRAE Guideline 14" in text
    assert "2026-03" in text and "48,000" in text and "40,800 yuan" in text
    assert "expected 100,000 yuan a year" in text


def test_a_measure_of_several_quantities_adds_its_yuan() -> None:
    """The AC pumps save power and gas: each has its own baseline and tariff."""
    table: dict[str, dict[tuple[int, int], float]] = {"em-pumps": {}, "gm-plant": {}}
    for m in range(1, 13):
        table["em-pumps"][(2025, m)] = 20_000.0 + 1_000.0 * (m % 3 - 1)
        table["gm-plant"][(2025, m)] = 3_000.0 + 60.0 * (m % 2 * 2 - 1)
        table["em-pumps"][(2026, m)] = 17_000.0
        table["gm-plant"][(2026, m)] = 2_800.0
    data = report(_measure(["em-pumps", "gm-plant"]), SPECS, _monthly(table),
                  tariffs=TARIFFS, timezone=TZ, now=NOW)
    energy, gas = data["parts"]
    assert (energy["quantity"], gas["quantity"], gas["unit"]) == ("energy", "gas", "Nm3")
    assert energy["saving"] == pytest.approx(12 * 3_000.0)
    assert gas["saving"] == pytest.approx(12 * 200.0)
    assert data["saving_yuan"] == pytest.approx(36_000 * 0.85 + 2_400 * 3.9)


def test_months_not_over_cut_or_without_data_are_not_counted() -> None:
    """A saving is never made of a month without its data: the month still running, a
    month cut by the period's edge, a month a meter was silent all through."""
    table = {"em-light": {(2025, m): 1_000.0 for m in range(1, 13)}
             | {(2026, m): 600.0 for m in range(1, 13)},
             "em-light-2": {(2025, m): 500.0 for m in range(1, 13) if m != 4}
             | {(2026, m): 300.0 for m in range(1, 13) if m != 2}}
    now = dt.datetime(2026, 6, 20, tzinfo=SHANGHAI).timestamp()
    data = report(_measure(["em-light", "em-light-2"]), SPECS, _monthly(table),
                  tariffs=TARIFFS, timezone=TZ, now=now,
                  reporting=Period(start=dt.date(2026, 1, 10), end=dt.date(2027, 1, 1)))
    [part] = data["parts"]
    assert [r["period"] for r in part["reporting"]] == ["2026-03", "2026-04", "2026-05"]
    assert part["excluded"]["baseline"] == [{"period": "2025-04",
                                             "reason": "no data from em-light-2"}]
    reporting_out = {e["period"]: e["reason"] for e in part["excluded"]["reporting"]}
    assert reporting_out["2026-01"] == "part of a month"
    assert reporting_out["2026-02"] == "no data from em-light-2"
    assert reporting_out["2026-06"] == reporting_out["2026-12"] == "not over yet"
    assert part["saving"] == pytest.approx(3 * 600.0)
    assert data["saving_yuan_per_year"] == pytest.approx(1_800 * 0.85 * 365 / 92)
    assert "not counted (reporting): 2026-01 (part of a month)" in render(data)


def test_a_poor_baseline_is_said_to_fail_guideline_14() -> None:
    table = {"wm-main": {(2025, m): 1_000.0 * (1.5 if m % 2 else 0.5) for m in range(1, 13)}
             | {(2026, m): 700.0 for m in range(1, 13)}}
    data = report(_measure(["wm-main"]), SPECS, _monthly(table), tariffs=TARIFFS,
                  timezone=TZ, now=NOW)
    [part] = data["parts"]
    assert part["fit"]["acceptable"] is False
    assert part["saving"] == pytest.approx(12 * 300.0)
    assert part["saving_yuan"] == pytest.approx(3_600 * 4.6)
    assert "does NOT meet ASHRAE Guideline 14" in render(data)


def _temperatures(folder: Path, mean_of: object) -> Path:
    day, lines = dt.date(2025, 1, 1), ["# Changsha daily mean", "date,mean_c"]
    while day < dt.date(2027, 1, 1):
        lines.append(f"{day.isoformat()},{mean_of(day):.1f}")  # type: ignore[operator]
        day += dt.timedelta(days=1)
    path = folder / "changsha.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_baseline_is_adjusted_by_degree_days(tmp_path: Path) -> None:
    """AC pumps: 1,000 kWh + 5 kWh per degree-day a month. 2026 is 2 C warmer every day in
    summer: without the pumps it would have used more, and the saving counts that."""
    def mean(day: dt.date) -> float:
        hot = 28.0 if 6 <= day.month <= 8 else 12.0
        return hot + (2.0 if day.year == 2026 and 6 <= day.month <= 8 else 0.0)

    temps = read_temperatures(_temperatures(tmp_path, mean))
    cfg = DegreeDays(temperature_csv="changsha.csv", base_c=18.0, kind="both")
    months = {b.label: degree_days(temps, cfg, b, SHANGHAI)
              for b in buckets(Period(start=dt.date(2025, 1, 1), end=dt.date(2027, 1, 1)),
                               "monthly", SHANGHAI)}
    assert months["2025-07"] == pytest.approx(31 * 10.0)
    assert months["2026-07"] == pytest.approx(31 * 12.0)
    assert months["2025-02"] == pytest.approx(28 * 6.0)
    table: dict[str, dict[tuple[int, int], float]] = {"em-pumps": {}}
    for label, dd in months.items():
        year, month = int(label[:4]), int(label[5:])
        used = 1_000.0 + 5.0 * dd
        table["em-pumps"][(year, month)] = used if year == 2025 else used * 0.8
    data = report(_measure(["em-pumps"], degree_days=cfg), SPECS, _monthly(table),
                  tariffs=TARIFFS, timezone=TZ, temperatures=temps, now=NOW)
    [part] = data["parts"]
    assert part["model"]["slope"] == pytest.approx(5.0)
    assert part["model"]["intercept"] == pytest.approx(1_000.0)
    assert part["fit"]["cv_rmse"] == pytest.approx(0.0, abs=1e-9)
    adjusted = sum(1_000.0 + 5.0 * dd for label, dd in months.items() if label[:4] == "2026")
    assert part["adjusted_baseline"] == pytest.approx(adjusted)
    assert part["saving"] == pytest.approx(adjusted * 0.2)
    assert "per degree-day" in render(data)


@pytest.mark.parametrize(("text", "error"), [
    ("date,mean_c\n2025-01-01,abc\n", ":2: expected date,mean_c"),
    ("2025-01-01\n", ":1: expected date,mean_c"),
    ("2025-13-01,10\n", ":1: expected date,mean_c"),
    ("2025-01-01,99\n", "99 C is not a daily mean temperature"),
])
def test_a_bad_temperature_file_is_refused_with_its_line(tmp_path: Path, text: str,
                                                         error: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(SavingsError, match=error):
        read_temperatures(path)


def test_a_missing_day_and_missing_data_are_errors_not_guesses(tmp_path: Path) -> None:
    cfg = DegreeDays(temperature_csv="t.csv")
    [january] = buckets(Period(start=dt.date(2025, 1, 1), end=dt.date(2025, 2, 1)), "monthly",
                        SHANGHAI)
    with pytest.raises(SavingsError, match="no mean temperature for 2025-01-31"):
        degree_days({dt.date(2025, 1, d): 10.0 for d in range(1, 31)}, cfg, january, SHANGHAI)
    with pytest.raises(SavingsError, match="no energy consumption stored"):
        report(_measure(["em-light"]), SPECS, _monthly({}), tariffs=TARIFFS, timezone=TZ,
               now=NOW)
    with pytest.raises(SavingsError, match="'em-nowhere' is not an enabled meter"):
        report(_measure(["em-nowhere"]), SPECS, _monthly({}), tariffs=TARIFFS, timezone=TZ,
               now=NOW)


# --- through the store ----------------------------------------------------------------


def _hourly_rows(source: str, metric: str, first: dt.date, last: dt.date,
                 per_day: object, restart_on: dt.date | None = None,
                 silent: tuple[dt.datetime, dt.datetime] | None = None
                 ) -> list[MinuteAggregate]:
    """A continuous total's last minute of every hour, as the daemon stores a meter read
    all the time, each day's use spread over its hours. On `restart_on` the total starts
    again from 0 (a gateway restarted without its stored state); while `silent`, the
    meter is off the line (no rows; its total goes on)."""
    rows, total, day = [], 5_000.0, first
    while day < last:
        for hour in range(24):
            total += per_day(day) / 24  # type: ignore[operator]
            if day == restart_on and hour == 0:
                total = per_day(day) / 24  # type: ignore[operator]
            at = dt.datetime(day.year, day.month, day.day, hour, 59, tzinfo=SHANGHAI)
            if silent is not None and silent[0] <= at < silent[1]:
                continue
            minute = int(at.timestamp() // 60)
            rows.append(MinuteAggregate(source, metric, "kWh", minute, total, total, total,
                                        total, 1))
        day += dt.timedelta(days=1)
    return rows


def _lighting(day: dt.date) -> float:
    # 330 kWh a day before the LEDs (weekdays 400, weekends 155), 60 % of it after.
    kwh = 400.0 if day.weekday() < 5 else 155.0
    return kwh if day < dt.date(2026, 1, 1) else kwh * 0.6


async def _fill_store(db: Path, rows: list[MinuteAggregate]) -> None:
    store = Store(db)
    store.open(asyncio.get_running_loop())
    try:
        await store.submit(WriteBatch(minutes=rows))
    finally:
        await store.close()


SITE_EXTRA = """\
energy:
  tariffs: {electricity_yuan_kwh: 0.85}
  measures:
    - id: led-lighting
      name: LED lighting retrofit
      meters: [em-lighting]
      baseline: {start: 2025-01-01, end: 2026-01-01}
      reporting: {start: 2026-01-01, end: 2026-07-01}
      expected_yuan_per_year: 100000
"""


def _site(folder: Path, port: int) -> Path:
    path = plant_room_site(folder, f"""\
  - {{driver: modbus, id: em-lighting, kind: energy_meter, zone: main-plant-room,
     address: "tcp://127.0.0.1:{port}/1", profile: eastron-sdm630, system: lighting}}
""", SITE_EXTRA)
    (folder / "data").mkdir(exist_ok=True)
    return path


def _expected_saving() -> float:
    day, saved = dt.date(2026, 1, 1), 0.0
    baseline_days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(365)]
    # The mean model: the baseline's mean month, per reporting month.
    months: dict[tuple[int, int], float] = {}
    for d in baseline_days:
        months[(d.year, d.month)] = months.get((d.year, d.month), 0.0) + _lighting(d)
    mean_month = sum(months.values()) / 12
    while day < dt.date(2026, 7, 1):
        saved -= _lighting(day)
        day += dt.timedelta(days=1)
    return saved + 6 * mean_month


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_through_the_store_the_cli_and_the_desk_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    async with MeterServer([meter("eastron-sdm630", 1)]) as server:
        await _through_the_store(tmp_path, capsys, _site(tmp_path, server.port))


async def _through_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             site: Path) -> None:
    db = tmp_path / "data" / "gateway.db"
    # Rows from 2024-12 on (the lead-in), a restart without state in May 2025.
    await _fill_store(db, _hourly_rows("em-lighting", "energy_import_kwh_consumed",
                                       dt.date(2024, 12, 1), dt.date(2026, 7, 1), _lighting,
                                       restart_on=dt.date(2025, 5, 10)))
    want = _expected_saving()

    assert await asyncio.to_thread(cli_main, ["savings", "led-lighting", "--site", str(site),
                                              "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    [part] = data["parts"]
    assert [row["period"] for row in part["reporting"]] == [f"2026-0{m}" for m in range(1, 7)]
    assert sum(r["consumption"] for r in part["baseline"]) == pytest.approx(
        sum(_lighting(dt.date(2025, 1, 1) + dt.timedelta(days=i)) for i in range(365)))
    assert part["saving"] == pytest.approx(want)
    assert part["saving_yuan"] == pytest.approx(want * 0.85)
    assert part["fit"]["acceptable"] is True

    assert await asyncio.to_thread(cli_main, ["savings", "led-lighting", "--site",
                                              str(site)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("LED lighting retrofit (led-lighting)")
    assert f"{want * 0.85:,.0f} yuan" in text
    assert await asyncio.to_thread(cli_main, ["savings", "--site", str(site)]) == 0
    assert "led-lighting" in capsys.readouterr().out
    assert await asyncio.to_thread(cli_main, ["savings", "led", "--site", str(site)]) == 2
    assert "no measure 'led' (known: led-lighting)" in capsys.readouterr().err
    assert await asyncio.to_thread(cli_main, ["savings", "led-lighting", "--site", str(site),
                                              "--baseline", "2025-06-01:2025-01-01"]) == 2
    assert "must come after" in capsys.readouterr().err

    async with running_gateway(site) as gateway:
        base = f"http://127.0.0.1:{gateway.http_port}/api/savings"
        status, listed = await asyncio.to_thread(_get, base)
        assert status == 200
        assert [m["id"] for m in listed["measures"]] == ["led-lighting"]  # type: ignore[index]
        status, served = await asyncio.to_thread(_get, f"{base}/led-lighting")
        assert status == 200 and served == data
        status, other = await asyncio.to_thread(
            _get, f"{base}/led-lighting?baseline=2025-01-01:2025-07-01"
                  "&reporting=2026-01-01:2026-04-01")
        assert status == 200
        assert [r["period"] for r in other["parts"][0]["reporting"]] == [  # type: ignore[index]
            "2026-01", "2026-02", "2026-03"]
        assert (await asyncio.to_thread(_get, f"{base}/nothing"))[0] == 404
        assert (await asyncio.to_thread(_get, f"{base}/led-lighting?baseline=2025"))[0] == 400
        status, empty = await asyncio.to_thread(
            _get, f"{base}/led-lighting?baseline=2020-01-01:2021-01-01")
        assert status == 422 and "no energy consumption stored" in str(empty["error"])


@pytest.mark.parametrize(("silent", "excluded"), [
    # Five days off the line across the end of March: neither month can be split.
    ((dt.datetime(2026, 3, 29, tzinfo=SHANGHAI), dt.datetime(2026, 4, 3, tzinfo=SHANGHAI)),
     {"2026-03": "em-lighting off the line across its edge",
      "2026-04": "em-lighting off the line across its edge"}),
    # Three hours across midnight: a rounding error of a month, both counted.
    ((dt.datetime(2026, 3, 31, 22, tzinfo=SHANGHAI), dt.datetime(2026, 4, 1, 1, tzinfo=SHANGHAI)),
     {}),
    # All of May: no data; June carries May's use and has May's gap at its edge.
    ((dt.datetime(2026, 4, 30, 23, tzinfo=SHANGHAI), dt.datetime(2026, 6, 1, tzinfo=SHANGHAI)),
     {"2026-05": "no data from em-lighting",
      "2026-04": "em-lighting off the line across its edge",
      "2026-06": "em-lighting off the line across its edge"}),
])
async def test_a_meter_off_the_line_across_a_months_edge(
    tmp_path: Path, silent: tuple[dt.datetime, dt.datetime], excluded: dict[str, str],
) -> None:
    db = tmp_path / "gateway.db"
    await _fill_store(db, _hourly_rows("em-lighting", "energy_import_kwh_consumed",
                                       dt.date(2024, 12, 25), dt.date(2026, 7, 1), _lighting,
                                       silent=silent))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        data = report(_measure(["em-light"]).model_copy(update={"meters": ["em-lighting"]}),
                      {"em-lighting": SPECS["em-light"]}, hourly_from(conn),
                      tariffs=TARIFFS, timezone=TZ, now=NOW,
                      reporting=Period(start=dt.date(2026, 1, 1), end=dt.date(2026, 7, 1)))
    [part] = data["parts"]
    got = {e["period"]: e["reason"] for e in part["excluded"]["reporting"]}
    assert got == excluded
    counted = {r["period"] for r in part["reporting"]}
    assert counted == {f"2026-0{m}" for m in range(1, 7)} - set(excluded)
    for row in part["reporting"]:  # what the meter used, to the hour
        month = dt.date(2026, int(row["period"][5:]), 1)
        days = [month + dt.timedelta(days=i) for i in range(31)
                if (month + dt.timedelta(days=i)).month == month.month]
        assert row["consumption"] == pytest.approx(sum(_lighting(d) for d in days), rel=0.01)


# --- the meters' hourly totals, kept for years -------------------------------------------


def _row(metric: str, minute: int, last: float) -> MinuteAggregate:
    return MinuteAggregate("em-light", metric, "kWh", minute, last, last, last, last, 1)


async def test_hourly_totals_keep_the_newest_minute_of_each_hour(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    hour = 500_000
    await _fill_store(db, [
        _row("energy_import_kwh_consumed", hour * 60 + 50, 12.0),
        _row("energy_import_kwh_consumed", hour * 60 + 10, 10.0),  # flushed late: older
        _row("energy_import_kwh_consumed", hour * 60 + 70, 15.0),
        _row("power_w", hour * 60 + 50, 900.0),  # not a total: minutes only
    ])
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT metric, hour, minute, last FROM consumption_hours"
                            " ORDER BY hour").fetchall()
    assert rows == [("energy_import_kwh_consumed", hour, hour * 60 + 50, 12.0),
                    ("energy_import_kwh_consumed", hour + 1, hour * 60 + 70, 15.0)]


async def test_hourly_totals_outlive_the_minutes_and_the_size_bound(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    now = dt.datetime(2026, 12, 1, tzinfo=SHANGHAI).timestamp()
    old = int((now - 500 * 86_400) // 60)  # beyond readings_days, inside ten years
    ancient = int((now - 3700 * 86_400) // 60)
    store = Store(db, retention=Retention(max_db_mb=0.001))
    store.open(asyncio.get_running_loop())
    try:
        await store.submit(WriteBatch(minutes=[
            _row("energy_import_kwh_consumed", old, 100.0),
            _row("energy_import_kwh_consumed", ancient, 1.0),
            _row("energy_import_kwh_consumed", int(now // 60) - 5, 200.0)]))
        deleted = await store.run_retention(now)
    finally:
        await store.close()
    assert deleted["consumption_hours"] == 1
    assert deleted["readings"] >= 2
    with sqlite3.connect(db) as conn:
        hours = [r[0] for r in conn.execute("SELECT last FROM consumption_hours ORDER BY hour")]
    assert hours == [100.0, 200.0]


def test_an_upgraded_store_fills_the_hourly_totals_from_its_minutes(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    assert migrate(db, 0.0, upto=3) == [1, 2, 3]
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO readings (source, metric, minute, min, max, avg, last, count, unit)"
            " VALUES ('em-light', ?, ?, 0, 0, 0, ?, 1, 'kWh')",
            [("energy_import_kwh_consumed", 600, 1.0), ("energy_import_kwh_consumed", 659, 2.0),
             ("energy_import_kwh_consumed", 660, 3.0), ("energy_import_kwh", 600, 9.0)])
    assert migrate(db, 0.0, upto=4) == [4]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT hour, minute, last FROM consumption_hours ORDER BY hour"
                            ).fetchall() == [(10, 659, 2.0), (11, 660, 3.0)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(1, 5), st.floats(0, 50), st.booleans()),
                min_size=2, max_size=40))
def test_property_hourly_consumption_is_what_the_meter_counted(
    steps: list[tuple[int, float, bool]],
) -> None:
    """A meter's stored total, rising by what it counted, sometimes starting again from
    0 (a gateway restarted without state; its new total is then below the old one, which
    is how the store tells a restart): the hours' consumption adds up to what was counted
    after the first row, whatever the gaps between rows."""
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "gateway.db"
        migrate(db, 0.0)
        hour, total, counted, rows = 1_000_000, 100.0, 0.0, []
        for n, (gap, used, restart) in enumerate(steps):
            hour += gap
            restart = restart and used < total
            total = used if restart else total + used
            counted += used if n else 0.0
            rows.append(("em-light", "energy_import_kwh_consumed", hour, hour * 60, total))
        with sqlite3.connect(db) as conn:
            conn.executemany("INSERT INTO consumption_hours VALUES (?, ?, ?, ?, ?)", rows)
            got = hourly_consumption(conn, "em-light", "energy_import_kwh_consumed",
                                     rows[0][2] * 60, (hour + 1) * 60)
    assert sum(delta for delta, _ in got.values()) == pytest.approx(counted)
    assert [previous for _, previous in got.values()][1:] == [r[2] for r in rows][:-1]
