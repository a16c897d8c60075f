"""Daily mean temperatures from an outdoor sensor's minute rows in the store, for the
savings report's degree-days (instead of a temperature file).

A day's mean is the mean of its hourly means, so a sensor that reported more often in
some hours does not weigh them more. A day with fewer than `min_hours` hours of readings
has no mean: the report then says which day is missing rather than guessing it."""

from __future__ import annotations

import datetime as dt
import sqlite3
from zoneinfo import ZoneInfo

from gateway.energy_config import TemperatureSeries

_HOURLY_MEANS = """
SELECT minute / 60 AS hour, avg(avg) FROM readings
WHERE source = ? AND metric = ? AND minute >= ? AND minute < ?
GROUP BY hour ORDER BY hour
"""


def _epoch_minute(day: dt.date, tz: ZoneInfo) -> int:
    return int(dt.datetime.combine(day, dt.time(), tz).timestamp()) // 60


def daily_means(conn: sqlite3.Connection, series: TemperatureSeries, start: dt.date,
                end: dt.date, tz: ZoneInfo) -> dict[dt.date, float]:
    """Site date -> mean temperature, for the days in [start, end) with enough hours."""
    hours: dict[dt.date, list[float]] = {}
    rows = conn.execute(_HOURLY_MEANS, [series.source, series.metric,
                                        _epoch_minute(start, tz), _epoch_minute(end, tz)])
    for hour, mean in rows:
        # The hour's middle names its day (a zone whose offset is not whole hours).
        day = dt.datetime.fromtimestamp(hour * 3600 + 1800, tz).date()
        hours.setdefault(day, []).append(float(mean))
    return {day: sum(means) / len(means) for day, means in hours.items()
            if len(means) >= series.min_hours}
