"""Per-minute downsampling of telemetry before it reaches the store.

Pure and single-threaded: the loop adds readings as they arrive and flushes the
minutes that can no longer change; the store merges a minute flushed twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.events import Reading


@dataclass(frozen=True, slots=True)
class MinuteAggregate:
    source: str
    metric: str
    unit: str
    minute: int  # epoch minute: floor(time / 60)
    min: float
    max: float
    avg: float
    last: float
    count: int


class _Accumulator:
    __slots__ = ("count", "last", "max", "min", "total", "unit")

    def __init__(self, value: float, unit: str) -> None:
        self.min = value
        self.max = value
        self.total = value
        self.last = value
        self.count = 1
        self.unit = unit


class Downsampler:
    """Accumulates readings per (source, metric, minute) of receive time."""

    def __init__(self) -> None:
        # The minute is part of the key so a reading that arrives after its minute
        # was already overtaken still lands in its own minute, not the current one.
        self._open: dict[tuple[str, str, int], _Accumulator] = {}
        self.discarded = 0  # NaN or infinite values: one would poison min, max and avg

    def __len__(self) -> int:
        return len(self._open)

    def add(self, r: Reading) -> None:
        value = r.value
        if not math.isfinite(value):
            self.discarded += 1
            return
        key = (r.source, r.metric, int(r.time // 60))
        acc = self._open.get(key)
        if acc is None:
            self._open[key] = _Accumulator(value, r.unit)
            return
        if value < acc.min:
            acc.min = value
        if value > acc.max:
            acc.max = value
        acc.total += value
        acc.last = value
        acc.count += 1
        acc.unit = r.unit

    def flush_due(self, now: float) -> list[MinuteAggregate]:
        """Take every minute strictly before the minute `now` falls in."""
        current = int(now // 60)
        due = [key for key in self._open if key[2] < current]
        return [self._take(key) for key in due]

    def flush_all(self) -> list[MinuteAggregate]:
        """Take everything, the current minute included (on shutdown)."""
        return [self._take(key) for key in list(self._open)]

    def _take(self, key: tuple[str, str, int]) -> MinuteAggregate:
        acc = self._open.pop(key)
        source, metric, minute = key
        return MinuteAggregate(
            source=source,
            metric=metric,
            unit=acc.unit,
            minute=minute,
            min=acc.min,
            max=acc.max,
            avg=acc.total / acc.count,
            last=acc.last,
            count=acc.count,
        )
