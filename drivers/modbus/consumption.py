"""Consumption from a meter's counter (kWh, m3, Nm3), continuous across a reset or a meter
replacement, never including a reading that went backwards or jumped beyond what the
installation can draw. Pure; time is passed in.

The continuous total only ever adds what a plausible step counted (kept as a sum, not as
`offset + raw`, so float rounding can never take it back). A counter that falls back near
zero is a reset (or a new meter starting at zero): what it counted since is added, nothing
already consumed is lost or counted twice. A counter that falls back or leaps elsewhere is held
as a suspect; if the next reading carries on plausibly from the suspect, the meter was
replaced (new starting value) and counting goes on from there; if it carries on from the old
value, the suspect was a glitch. Either way the step into the discontinuity is never
summed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.modbus.plausibility import Flag

# Measurement noise and rounding on a counter: a few counts of its last digit.
_SLACK = 0.05


class Change(enum.StrEnum):
    NONE = ""
    RESET = "reset"
    REPLACED = "replaced"


@dataclass(frozen=True, slots=True)
class Outcome:
    total: float  # the continuous total after this reading (never decreases)
    delta: float  # what this reading added (0 when flagged)
    flag: Flag | None = None
    change: Change = Change.NONE


@dataclass
class Counter:
    """One meter's counter. `max_rise_per_h`: the most the installation can add in an hour."""

    max_rise_per_h: float
    total: float = 0.0
    last_raw: float | None = None
    last_time: float = 0.0
    suspect: tuple[float, float] | None = None  # (raw, time) of a discontinuity

    def _allowed(self, since: float, now: float) -> float:
        hours = max(0.0, now - since) / 3600.0
        return self.max_rise_per_h * hours * (1 + _SLACK) + _SLACK

    def update(self, raw: float, now: float) -> Outcome:
        if self.last_raw is None:
            self.last_raw, self.last_time = raw, now
            return Outcome(self.total, 0.0)
        if self.suspect is not None:
            suspect_raw, suspect_time = self.suspect
            self.suspect = None
            rise = raw - suspect_raw
            if 0 <= rise <= self._allowed(suspect_time, now):
                # It carries on from the new value: a replaced meter. The step into the new
                # value is not consumption; what the new meter counted since is.
                self.total += rise
                self.last_raw, self.last_time = raw, now
                return Outcome(self.total, rise, change=Change.REPLACED)
        delta = raw - self.last_raw
        allowed = self._allowed(self.last_time, now)
        if 0 <= delta <= allowed:
            self.total += delta
            self.last_raw, self.last_time = raw, now
            return Outcome(self.total, delta)
        if delta < 0 and 0 <= raw <= allowed:
            # Back to (near) zero: a reset. What it counted since the reset is consumption.
            self.total += raw
            self.last_raw, self.last_time = raw, now
            return Outcome(self.total, raw, change=Change.RESET)
        self.suspect = (raw, now)
        return Outcome(self.total, 0.0, flag=Flag.BACKWARDS if delta < 0 else Flag.JUMP)
