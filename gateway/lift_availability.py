"""Lift and building availability kept in the store: each lift's state, sampled at the
pipeline's tick, as available, unavailable, or unknown (its box silent or not yet heard),
summed into seconds per minute for each lift and each building. Pure: time passed in."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

AVAILABLE, UNAVAILABLE, UNKNOWN = "available", "unavailable", "unknown"
_STATES = (AVAILABLE, UNAVAILABLE, UNKNOWN)
# A longer gap between two ticks is the gateway's own stall (or a clock step): what the
# lifts did meanwhile was not seen, so it is left out and the report counts it unknown.
MAX_STEP_S = 5.0


@dataclass(frozen=True, slots=True)
class AvailabilityMinute:
    scope: str  # "lift" | "building"
    id: str
    minute: int  # epoch minute
    available_s: float
    unavailable_s: float
    unknown_s: float  # a building's: lift-seconds, summed over its lifts


class AvailabilityLog:
    """`states()` gives (lift, building, state) for every lift now."""

    def __init__(self, states: Callable[[], Iterable[tuple[str, str, str]]]) -> None:
        self._states = states
        self._last: float | None = None
        self._open: dict[tuple[str, str, int], list[float]] = {}

    def sample(self, now: float) -> None:
        """The time since the last sample is put to each lift's state now."""
        last, self._last = self._last, now
        if last is None or now <= last or now - last > MAX_STEP_S:
            return
        pieces = []
        start = last
        while start < now:
            minute = int(start // 60)
            end = min(now, (minute + 1) * 60.0)
            pieces.append((minute, end - start))
            start = end
        for lift, building, state in self._states():
            i = _STATES.index(state)
            for minute, seconds in pieces:
                for key in (("lift", lift, minute), ("building", building, minute)):
                    acc = self._open.get(key)
                    if acc is None:
                        acc = self._open[key] = [0.0, 0.0, 0.0]
                    acc[i] += seconds

    def flush_due(self, now: float) -> list[AvailabilityMinute]:
        """Every minute strictly before the minute `now` falls in."""
        current = int(now // 60)
        return [self._take(k) for k in [k for k in self._open if k[2] < current]]

    def flush_all(self) -> list[AvailabilityMinute]:
        return [self._take(k) for k in list(self._open)]

    def _take(self, key: tuple[str, str, int]) -> AvailabilityMinute:
        a, u, n = self._open.pop(key)
        return AvailabilityMinute(key[0], key[1], key[2], round(a, 3), round(u, 3),
                                  round(n, 3))
