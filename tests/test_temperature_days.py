"""Degree-days from an outdoor sensor's series in the store, against the same temperatures
from a file; a day with too few hours is an error, not a guess."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from gateway.energy_config import DegreeDays, Measure, Period, Tariffs, TemperatureSeries
from gateway.metering import MeterSpec, Quantity
from gateway.savings_report import SavingsError, report_from_db
from gateway.store.schema import migrate
from gateway.temperature_days import daily_means

TZ = "Asia/Shanghai"
SHANGHAI = ZoneInfo(TZ)
SENSOR = TemperatureSeries(source="ts-outdoor", metric="temperature_c")
SPECS = {"em-pumps": MeterSpec("em-pumps", "main", "ac_pumps",
                               {"energy_import_kwh_consumed": Quantity.ENERGY})}
NOW = dt.datetime(2027, 2, 1, tzinfo=SHANGHAI).timestamp()


def _minute(day: dt.date, hour: int, minute: int = 30) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, minute,
                           tzinfo=SHANGHAI).timestamp()) // 60


def _row(day: dt.date, hour: int, value: float, minute: int = 30) -> tuple[object, ...]:
    return ("ts-outdoor", "temperature_c", _minute(day, hour, minute), value, value, value,
            value, 1, "C")


def _insert(db: Path, rows: list[tuple[object, ...]]) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO readings (source, metric, minute, min, max, avg, last, count, unit)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def test_a_day_mean_is_the_mean_of_its_hours_and_a_short_day_has_none(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    migrate(db, 0.0)
    full, short = dt.date(2025, 7, 1), dt.date(2025, 7, 2)
    rows = [_row(full, h, 20.0 + h) for h in range(24)]
    # Hour 0 reported every minute: it still counts as one hour, not sixty.
    rows += [_row(full, 0, 20.0, m) for m in range(0, 30)]
    rows += [_row(short, h, 30.0) for h in range(10)]
    _insert(db, rows)
    with sqlite3.connect(db) as conn:
        got = daily_means(conn, SENSOR, full, dt.date(2025, 7, 3), SHANGHAI)
        assert got == {full: pytest.approx(20.0 + 11.5)}
        lenient = SENSOR.model_copy(update={"min_hours": 10})
        assert daily_means(conn, lenient, full, dt.date(2025, 7, 3), SHANGHAI)[short] == 30.0
        # Days are site days: 23:30 on the 1st in Changsha is in the 1st, not the 2nd.
        assert daily_means(conn, SENSOR, short, dt.date(2025, 7, 3), SHANGHAI) == {}


def _mean(day: dt.date) -> float:
    hot = 28.0 if 6 <= day.month <= 8 else 12.0
    return hot + (2.0 if day.year == 2026 and 6 <= day.month <= 8 else 0.0)


def _days() -> list[dt.date]:
    first = dt.date(2025, 1, 1)
    return [first + dt.timedelta(days=n) for n in range((dt.date(2027, 1, 1) - first).days)]


def _store(tmp_path: Path) -> Path:
    """Two years of a pump meter whose daily use follows the degree-days from 18 C (20%
    less in 2026), and an outdoor sensor hour by hour around each day's mean."""
    db = tmp_path / "gateway.db"
    migrate(db, 0.0)
    readings, hours, total = [], [], 0.0
    for day in _days():
        mean = _mean(day)
        readings += [_row(day, h, mean + (h - 11.5)) for h in range(24)]
        used = 30.0 + 2.0 * abs(mean - 18.0)
        for h in range(24):  # read every hour, as the daemon stores it
            total += used * (0.8 if day.year == 2026 else 1.0) / 24
            at = _minute(day, h, 59)
            hours.append(("em-pumps", "energy_import_kwh_consumed", at // 60, at, total))
    _insert(db, readings)
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO consumption_hours VALUES (?, ?, ?, ?, ?)", hours)
    return db


def _measure(degree_days: DegreeDays) -> Measure:
    return Measure.model_validate({
        "id": "pumps", "name": "AC pumps", "meters": ["em-pumps"],
        "baseline": Period(start=dt.date(2025, 1, 1), end=dt.date(2026, 1, 1)),
        "reporting": Period(start=dt.date(2026, 1, 1), end=dt.date(2027, 1, 1)),
        "degree_days": degree_days})


def test_degree_days_from_the_store_match_those_from_a_file(tmp_path: Path) -> None:
    db = _store(tmp_path)
    csv = tmp_path / "temperatures.csv"
    csv.write_text("date,mean_c\n" + "".join(f"{d},{_mean(d)}\n" for d in _days()))
    measure = _measure(DegreeDays(sensor=SENSOR, base_c=18.0))
    kw = {"tariffs": Tariffs(), "timezone": TZ, "site_dir": tmp_path, "now": NOW}
    from_store = report_from_db(db, measure, SPECS, **kw)  # type: ignore[arg-type]
    from_file = report_from_db(db, measure, SPECS, temperature_csv=csv,
                               **kw)  # type: ignore[arg-type]
    assert from_store == from_file
    [part] = from_store["parts"]
    # 2 kWh a degree-day (the intercept takes 30 a day; months differ in length)
    assert part["model"]["slope"] == pytest.approx(2.0, rel=0.1)
    assert part["saving"] > 0


def test_a_day_the_sensor_was_silent_is_named(tmp_path: Path) -> None:
    db = _store(tmp_path)
    silent = dt.date(2025, 3, 10)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM readings WHERE minute >= ? AND minute < ?",
                     [_minute(silent, 10, 0), _minute(silent + dt.timedelta(days=1), 0, 0)])
    measure = _measure(DegreeDays(sensor=SENSOR))
    with pytest.raises(SavingsError, match=r"no mean temperature for 2025-03-10 in "
                                           r"ts-outdoor/temperature_c in the store"):
        report_from_db(db, measure, SPECS, tariffs=Tariffs(), timezone=TZ,
                       site_dir=tmp_path, now=NOW)


def test_an_absurd_day_mean_is_refused(tmp_path: Path) -> None:
    db = _store(tmp_path)
    day = dt.date(2025, 5, 5)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE readings SET avg = 500 WHERE minute >= ? AND minute < ?",
                     [_minute(day, 0, 0), _minute(day + dt.timedelta(days=1), 0, 0)])
    with pytest.raises(SavingsError, match="500 C on 2025-05-05 is not a daily mean"):
        report_from_db(db, _measure(DegreeDays(sensor=SENSOR)), SPECS, tariffs=Tariffs(),
                       timezone=TZ, site_dir=tmp_path, now=NOW)


def test_degree_days_take_a_file_a_sensor_or_both() -> None:
    with pytest.raises(ValidationError, match="take temperature_csv, sensor, or both"):
        DegreeDays.model_validate({})
    both = DegreeDays.model_validate({"temperature_csv": "t.csv",
                                      "sensor": {"source": "ts-outdoor"}})
    assert both.origin == "ts-outdoor/temperature_c in the store or t.csv"


def test_the_file_fills_the_days_the_sensor_has_none(tmp_path: Path) -> None:
    db = _store(tmp_path)
    silent = dt.date(2025, 3, 10)
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM readings WHERE minute >= ? AND minute < ?",
                     [_minute(silent, 10, 0), _minute(silent + dt.timedelta(days=1), 0, 0)])
    csv = tmp_path / "temperatures.csv"
    csv.write_text("date,mean_c\n" + "".join(f"{d},{_mean(d)}\n" for d in _days()))
    kw = {"tariffs": Tariffs(), "timezone": TZ, "site_dir": tmp_path, "now": NOW}
    both = report_from_db(db, _measure(DegreeDays(sensor=SENSOR, temperature_csv=csv.name)),
                          SPECS, **kw)  # type: ignore[arg-type]
    from_file = report_from_db(db, _measure(DegreeDays(temperature_csv=csv.name)), SPECS,
                               **kw)  # type: ignore[arg-type]
    assert both == from_file


def test_a_sensor_that_is_not_in_the_site_file_is_a_config_issue(tmp_path: Path) -> None:
    from gateway.config import check_config
    from tests.test_config import MINIMAL, _write

    measure = """
energy:
  measures:
    - id: pumps
      name: AC pumps
      meters: [hd-main-01]
      baseline: {start: 2025-01-01, end: 2026-01-01}
      reporting: {start: 2026-01-01, end: 2027-01-01}
      degree_days: {sensor: {source: ts-nowhere}}
"""
    issues = check_config(_write(tmp_path, MINIMAL + measure), environ={})
    assert [i.message for i in issues if "ts-nowhere" in i.message] == [
        "no device 'ts-nowhere' in the site file for the degree-days' temperatures"]
