"""The savings report of one measure (LED lighting, the AC pumps, the mended water mains):
consumption per month (or hour) of its meters from the store, in the baseline period and
the reporting period; a baseline model fitted on the first (degree-days where a daily
temperature file is given), judged by ASHRAE Guideline 14; and what the reporting period
would have used without the measure, against what it did use, in kWh, m3, Nm3 and yuan.

`report` builds it as JSON (the desk API serves that); `render` prints it as the month
table the compound's report carries. The statistics are `gateway.savings`.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.energy_config import DegreeDays, Measure, Period, Tariffs
from gateway.errors import ConfigError
from gateway.metering import MeterSpec, Quantity
from gateway.savings import LIMITS, cv_rmse, fit, nmbe
from gateway.store.queries import hourly_consumption
from gateway.temperature_days import daily_means

UNITS: dict[Quantity, str] = {Quantity.ENERGY: "kWh", Quantity.WATER: "m3",
                              Quantity.GAS: "Nm3"}

# (source, metric, start minute, end minute) -> epoch hour -> (consumption, the hour of
# the row before it)
Hourly = Callable[[str, str, int, int], Mapping[int, tuple[float, int | None]]]


# A meter off the line longer than this across a month's edge leaves both months out:
# what it used then cannot be split between them. A few hours are under 1 % of a month.
SPLIT_GAP_HOURS = 6


class SavingsError(ConfigError):
    """The report cannot be made: an unknown measure, no data, a bad temperature file."""


def tariff(tariffs: Tariffs, quantity: Quantity) -> float:
    return {Quantity.ENERGY: tariffs.electricity_yuan_kwh, Quantity.WATER: tariffs.water_yuan_m3,
            Quantity.GAS: tariffs.gas_yuan_nm3}[quantity]


@dataclass(frozen=True, slots=True)
class Bucket:
    label: str  # "2026-03" or "2026-03-01T14"
    start: float  # epoch seconds
    end: float


def buckets(period: Period, granularity: str, tz: ZoneInfo) -> list[Bucket]:
    """Calendar months (or hours) of site time from start to end; a month cut by the
    period's edge is cut there too."""
    out: list[Bucket] = []
    start = dt.datetime.combine(period.start, dt.time(), tz)
    end = dt.datetime.combine(period.end, dt.time(), tz)
    at = start
    while at < end:
        if granularity == "hourly":
            # Wall-clock hours: Asia/Shanghai has no daylight saving.
            nxt = at + dt.timedelta(hours=1)
            label = at.strftime("%Y-%m-%dT%H")
        else:
            month = at.replace(day=1)
            nxt = (month + dt.timedelta(days=32)).replace(day=1)
            label = at.strftime("%Y-%m")
        nxt = min(nxt, end)
        out.append(Bucket(label, at.timestamp(), nxt.timestamp()))
        at = nxt
    return out


def read_temperatures(path: Path) -> dict[dt.date, float]:
    """Daily mean temperatures, `date,mean_c` per line (a header and `#` lines allowed)."""
    out: dict[dt.date, float] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SavingsError(f"{path}: cannot read the temperature file: {exc}") from None
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or row[0].startswith("#") or row[0].strip() == "date":
            continue
        try:
            day, mean = dt.date.fromisoformat(row[0].strip()), float(row[1])
        except (IndexError, ValueError):
            raise SavingsError(f"{path}:{n}: expected date,mean_c, not {','.join(row)!r}"
                               ) from None
        if not -60 <= mean <= 60:
            raise SavingsError(f"{path}:{n}: {mean:g} C is not a daily mean temperature")
        out[day] = mean
    return out


def degree_days(day_means: Mapping[dt.date, float], cfg: DegreeDays, bucket: Bucket,
                tz: ZoneInfo) -> float:
    """The bucket's degree-days (cooling above the base, heating below, or both), each
    day weighted by the share of it inside the bucket. A day missing from the file is an
    error: a guessed temperature would bias the baseline."""
    total = 0.0
    day = dt.datetime.fromtimestamp(bucket.start, tz).date()
    while True:
        day_start = dt.datetime.combine(day, dt.time(), tz).timestamp()
        if day_start >= bucket.end:
            break
        share = (min(bucket.end, day_start + 86_400) - max(bucket.start, day_start)) / 86_400
        if day not in day_means:
            raise SavingsError(f"no mean temperature for {day} in {cfg.origin}")
        mean = day_means[day]
        cooling, heating = max(0.0, mean - cfg.base_c), max(0.0, cfg.base_c - mean)
        dd = {"cooling": cooling, "heating": heating, "both": cooling + heating}[cfg.kind]
        total += dd * share
        day += dt.timedelta(days=1)
    return total


def consumption(hourly: Hourly, meters: Sequence[tuple[str, str]], chosen: Sequence[Bucket]
                ) -> tuple[list[float], list[set[str]], list[set[str]]]:
    """Per bucket: what the meters' totals rose in it, added up; the meters with no row
    in it (off the line, or not installed yet); and the meters off the line across its
    start or its end (what they used then cannot be split between the two)."""
    if not chosen:
        return [], [], []
    first, last = int(chosen[0].start // 60), int(chosen[-1].end // 60)
    starts = [b.start for b in chosen]

    def index(hour: int) -> int:
        t = hour * 3600.0
        i = bisect.bisect_right(starts, t) - 1
        return i if i >= 0 and t < chosen[i].end else -1

    out = [0.0] * len(chosen)
    silent = [{source for source, _ in meters} for _ in chosen]
    split = [set[str]() for _ in chosen]
    for source, metric in meters:
        for hour, (delta, previous) in hourly(source, metric, first, last).items():
            i = index(hour)
            if i < 0:
                continue
            out[i] += delta
            silent[i].discard(source)
            if previous is not None and hour - previous > SPLIT_GAP_HOURS:
                j = index(previous)
                if j != i:
                    for k in range(max(0, j), i + 1):
                        split[k].add(source)
    return out, silent, split


def _whole_month(b: Bucket, tz: ZoneInfo) -> bool:
    start = dt.datetime.fromtimestamp(b.start, tz)
    end = dt.datetime.fromtimestamp(b.end, tz)
    return start.day == 1 and start.hour == 0 and end.day == 1 and end.hour == 0


def _usable(chosen: Sequence[Bucket], values: Sequence[float], silent: Sequence[set[str]],
            split: Sequence[set[str]], granularity: str, tz: ZoneInfo, now: float
            ) -> tuple[list[tuple[Bucket, float]], list[dict[str, str]]]:
    """The buckets a model may be fitted on or judged by, and why the others are not: a
    month not over yet, part of a month (the model is per whole month), a meter silent
    all through it or off the line across its edge (its use would land in the month it
    came back)."""
    kept: list[tuple[Bucket, float]] = []
    excluded: list[dict[str, str]] = []
    for b, y, quiet, cut in zip(chosen, values, silent, split, strict=True):
        if b.end > now:
            reason = "not over yet"
        elif granularity == "monthly" and not _whole_month(b, tz):
            reason = "part of a month"
        elif quiet:
            reason = f"no data from {', '.join(sorted(quiet))}"
        elif cut:
            reason = f"{', '.join(sorted(cut))} off the line across its edge"
        else:
            kept.append((b, y))
            continue
        excluded.append({"period": b.label, "reason": reason})
    return kept, excluded


def _part(quantity: Quantity, meters: Sequence[tuple[str, str]], measure: Measure,
          baseline: Period, reporting: Period, hourly: Hourly, tz: ZoneInfo,
          tariffs: Tariffs, temperatures: Mapping[dt.date, float] | None,
          now: float) -> dict[str, Any]:
    g = measure.granularity
    base_all = buckets(baseline, g, tz)
    rep_all = buckets(reporting, g, tz)
    base_kept, base_out = _usable(base_all, *consumption(hourly, meters, base_all), g, tz, now)
    rep_kept, rep_out = _usable(rep_all, *consumption(hourly, meters, rep_all), g, tz, now)
    base_b, base_y = [b for b, _ in base_kept], [y for _, y in base_kept]
    rep_b, rep_y = [b for b, _ in rep_kept], [y for _, y in rep_kept]
    unit = UNITS[quantity]
    if len(base_y) < 2 or sum(base_y) <= 0:
        raise SavingsError(f"{measure.id}: no {quantity.value} consumption stored for the "
                           f"baseline {baseline.start} to {baseline.end}")
    base_x: list[float] | None = None
    rep_x: list[float] | None = None
    if measure.degree_days is not None and temperatures is not None:
        base_x = [degree_days(temperatures, measure.degree_days, b, tz) for b in base_b]
        rep_x = [degree_days(temperatures, measure.degree_days, b, tz) for b in rep_b]
    model = fit(base_y, base_x)
    fitted = [model.predict(x) for x in (base_x or [0.0] * len(base_y))]
    adjusted = [model.predict(x) for x in (rep_x or [0.0] * len(rep_y))]
    cv, bias = cv_rmse(base_y, fitted, model.parameters), nmbe(base_y, fitted, model.parameters)
    cv_limit, bias_limit = LIMITS[g]
    price = tariff(tariffs, quantity)
    saved = sum(adjusted) - sum(rep_y)
    return {
        "quantity": quantity.value,
        "unit": unit,
        "meters": [source for source, _ in meters],
        "tariff_yuan": price,
        "baseline": [
            {"period": b.label, "consumption": y, "degree_days": None if base_x is None
             else base_x[i], "fitted": fitted[i]}
            for i, (b, y) in enumerate(zip(base_b, base_y, strict=True))],
        "reporting": [
            {"period": b.label, "consumption": y, "degree_days": None if rep_x is None
             else rep_x[i], "adjusted_baseline": adjusted[i], "saving": adjusted[i] - y}
            for i, (b, y) in enumerate(zip(rep_b, rep_y, strict=True))],
        "excluded": {"baseline": base_out, "reporting": rep_out},
        "model": {"intercept": model.intercept, "slope": model.slope,
                  "driver": "degree_days" if model.parameters == 2 else None},
        "fit": {"cv_rmse": cv, "nmbe": bias, "cv_rmse_limit": cv_limit,
                "nmbe_limit": bias_limit,
                "acceptable": cv <= cv_limit and abs(bias) <= bias_limit},
        "adjusted_baseline": sum(adjusted),
        "reported": sum(rep_y),
        "saving": saved,
        "saving_yuan": saved * price,
        "reporting_days": sum(b.end - b.start for b in rep_b) / 86_400,
    }


def report(measure: Measure, specs: Mapping[str, MeterSpec], hourly: Hourly, *,
           tariffs: Tariffs, timezone: str, baseline: Period | None = None,
           reporting: Period | None = None,
           temperatures: Mapping[dt.date, float] | None = None,
           now: float | None = None) -> dict[str, Any]:
    """The report as JSON-ready data. `specs`: the site's meters (which total of each
    is its consumption); `hourly`: the store's hourly consumption; `now`: periods that
    end later are not over yet."""
    tz = ZoneInfo(timezone)
    now = time.time() if now is None else now
    baseline = baseline or measure.baseline
    reporting = reporting or measure.reporting
    by_quantity: dict[Quantity, list[tuple[str, str]]] = {}
    for meter in measure.meters:
        spec = specs.get(meter)
        if spec is None:
            raise SavingsError(f"{measure.id}: meter {meter!r} is not an enabled meter")
        for metric, quantity in spec.totals.items():
            by_quantity.setdefault(quantity, []).append((meter, metric))
    if measure.degree_days is not None and temperatures is None:
        raise SavingsError(f"{measure.id}: degree-days need {measure.degree_days.origin}")
    parts = [_part(q, by_quantity[q], measure, baseline, reporting, hourly, tz, tariffs,
                   temperatures, now) for q in Quantity if q in by_quantity]
    total = sum(p["saving_yuan"] for p in parts)
    # Per year over the periods that count (the parts' are the same but for silent meters).
    days = min((p["reporting_days"] for p in parts), default=0.0)
    return {
        "measure": measure.id,
        "name": measure.name,
        "granularity": measure.granularity,
        "baseline": {"start": baseline.start.isoformat(), "end": baseline.end.isoformat()},
        "reporting": {"start": reporting.start.isoformat(), "end": reporting.end.isoformat()},
        "parts": parts,
        "saving_yuan": total,
        "saving_yuan_per_year": total * 365.0 / days if days else None,
        "expected_yuan_per_year": measure.expected_yuan_per_year,
    }


def hourly_from(conn: sqlite3.Connection) -> Hourly:
    def hourly(source: str, metric: str, start: int, end: int
               ) -> Mapping[int, tuple[float, int | None]]:
        return hourly_consumption(conn, source, metric, start, end)
    return hourly


def report_from_db(db_path: Path, measure: Measure, specs: Mapping[str, MeterSpec], *,
                   tariffs: Tariffs, timezone: str, site_dir: Path,
                   baseline: Period | None = None, reporting: Period | None = None,
                   temperature_csv: Path | None = None,
                   now: float | None = None) -> dict[str, Any]:
    """The report from the store file, on a read-only connection of its own (the daemon
    may be writing; WAL lets both go on)."""
    if not db_path.exists():
        raise SavingsError(f"no store at {db_path}")
    temperatures = None
    cfg = measure.degree_days
    # A file given here (the command line's) stands alone; the site file's may back a sensor.
    sensor = cfg.sensor if temperature_csv is None and cfg is not None else None
    if temperature_csv is None and cfg is not None and cfg.temperature_csv is not None:
        temperature_csv = site_dir / cfg.temperature_csv
    if temperature_csv is not None:
        temperatures = read_temperatures(temperature_csv)
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        if cfg is not None and sensor is not None:
            periods = [baseline or measure.baseline, reporting or measure.reporting]
            measured = daily_means(conn, sensor, min(p.start for p in periods),
                                   max(p.end for p in periods), ZoneInfo(timezone))
            for day, mean in measured.items():
                if not -60 <= mean <= 60:
                    raise SavingsError(f"{cfg.origin}: {mean:g} C on {day} is not a daily "
                                       "mean temperature")
            temperatures = (temperatures or {}) | measured
        return report(measure, specs, hourly_from(conn), tariffs=tariffs, timezone=timezone,
                      baseline=baseline, reporting=reporting, temperatures=temperatures,
                      now=now)
    finally:
        conn.close()


def _n(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def render(data: Mapping[str, Any]) -> str:
    """The report as text: per quantity a table of the reporting months, the baseline
    model's fit against Guideline 14, and the saving."""
    lines = [
        f"{data['name']} ({data['measure']})",
        f"baseline {data['baseline']['start']} to {data['baseline']['end']}, reporting "
        f"{data['reporting']['start']} to {data['reporting']['end']}, {data['granularity']}",
    ]
    for part in data["parts"]:
        unit = part["unit"]
        lines += ["", f"{part['quantity']} ({unit}), meters: {', '.join(part['meters'])}",
                  f"  {'period':<14}{'adjusted baseline':>18}{'used':>12}{'saving':>12}"]
        for row in part["reporting"]:
            lines.append(f"  {row['period']:<14}{_n(row['adjusted_baseline']):>18}"
                         f"{_n(row['consumption']):>12}{_n(row['saving']):>12}")
        lines.append(f"  {'total':<14}{_n(part['adjusted_baseline']):>18}"
                     f"{_n(part['reported']):>12}{_n(part['saving']):>12}")
        for period, excluded in part["excluded"].items():
            if excluded:
                lines.append(f"  not counted ({period}): " + ", ".join(
                    f"{e['period']} ({e['reason']})" for e in excluded))
        model, fitq = part["model"], part["fit"]
        driver = (f" + {model['slope']:,.2f} {unit} per degree-day"
                  if model["driver"] else "")
        verdict = "meets" if fitq["acceptable"] else "does NOT meet"
        lines += [
            f"  baseline model: {_n(model['intercept'])} {unit} per period{driver}",
            f"  CV(RMSE) {fitq['cv_rmse']:.1%} (limit {fitq['cv_rmse_limit']:.0%}), "
            f"NMBE {fitq['nmbe']:+.1%} (limit ±{fitq['nmbe_limit']:.0%}): {verdict} "
            "ASHRAE Guideline 14",
            f"  saving: {_n(part['saving'])} {unit} = {_n(part['saving_yuan'])} yuan at "
            f"{part['tariff_yuan']:g} yuan/{unit}",
        ]
    lines += ["", f"saving: {_n(data['saving_yuan'])} yuan"
              + (f" ({_n(data['saving_yuan_per_year'])} yuan a year)"
                 if data["saving_yuan_per_year"] is not None else "")
              + (f"; expected {_n(data['expected_yuan_per_year'])} yuan a year"
                 if data["expected_yuan_per_year"] is not None else "")]
    return "\n".join(lines) + "\n"
