"""Is a decoded value physically possible? Pure: a value outside its profile's band, a PF
outside [-1, 1] or a NaN/inf float is flagged; the driver counts it and never sums it."""

from __future__ import annotations

import enum
import math

from drivers.modbus.profile import Register


class Flag(enum.StrEnum):
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    BACKWARDS = "counter_backwards"
    JUMP = "counter_jump"


def check(register: Register, value: float) -> Flag | None:
    """None when plausible; otherwise why not (a bounded label for metrics)."""
    if not math.isfinite(value):
        return Flag.NOT_FINITE
    band = register.plausible
    if band is not None and not band.min <= value <= band.max:
        return Flag.OUT_OF_RANGE
    return None
