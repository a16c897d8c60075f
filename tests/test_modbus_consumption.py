"""Plausibility and consumption: tables with known answers, and a property test that no
sequence of readings makes consumption go down or include a flagged jump."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.consumption import Change, Counter
from drivers.modbus.plausibility import Flag, check
from drivers.modbus.profile import Register

VOLTAGE = Register.model_validate({"metric": "voltage_l1_v", "function": 4, "address": 0,
                                   "type": "float32", "plausible": {"min": 180, "max": 260}})
PF = Register.model_validate({"metric": "power_factor", "function": 4, "address": 0,
                              "type": "float32", "plausible": {"min": -1, "max": 1}})
FREE = Register.model_validate({"metric": "x", "function": 4, "address": 0, "type": "float32"})


@pytest.mark.parametrize(
    ("register", "value", "flag"),
    [
        (VOLTAGE, 230.0, None),
        (VOLTAGE, 180.0, None),
        (VOLTAGE, 179.9, Flag.OUT_OF_RANGE),
        (VOLTAGE, 400.0, Flag.OUT_OF_RANGE),
        (PF, -1.0, None),
        (PF, 0.95, None),
        (PF, 1.01, Flag.OUT_OF_RANGE),
        (PF, math.nan, Flag.NOT_FINITE),
        (FREE, math.inf, Flag.NOT_FINITE),
        (FREE, -math.inf, Flag.NOT_FINITE),
        (FREE, 1e30, None),
    ],
)
def test_plausibility(register: Register, value: float, flag: Flag | None) -> None:
    assert check(register, value) is flag


HOUR = 3600.0


@pytest.mark.parametrize(
    ("readings", "totals", "flags", "changes"),
    [
        # steady use, 10 kWh an hour on a 70 kW circuit
        ([(1000, 0), (1010, HOUR), (1020, 2 * HOUR)], [0, 10, 20], [None] * 3, [""] * 3),
        # a reset to zero: consumption carries on from where it was
        ([(1000, 0), (1010, HOUR), (3, 2 * HOUR), (13, 3 * HOUR)], [0, 10, 13, 23],
         [None] * 4, ["", "", "reset", ""]),
        # a glitch backwards, then the old counter again: flagged once, not summed
        ([(1000, 0), (500, HOUR), (1020, 2 * HOUR)], [0, 0, 20],
         [None, Flag.BACKWARDS, None], [""] * 3),
        # a leap beyond the breaker (1e6 kWh in an hour), then back: never summed
        ([(1000, 0), (1_000_000, HOUR), (1010, 2 * HOUR)], [0, 0, 10],
         [None, Flag.JUMP, None], [""] * 3),
        # a replaced meter that starts at 5000: the step is not consumption, its use is
        ([(1000, 0), (1010, HOUR), (5000, 2 * HOUR), (5008, 3 * HOUR)], [0, 10, 10, 18],
         [None, None, Flag.JUMP, None], ["", "", "", "replaced"]),
        # a replaced meter that starts lower but not at zero
        ([(1000, 0), (400, HOUR), (410, 2 * HOUR)], [0, 0, 10],
         [None, Flag.BACKWARDS, None], ["", "", "replaced"]),
        # nothing used: flat counter
        ([(1000, 0), (1000, HOUR)], [0, 0], [None, None], ["", ""]),
    ],
)
def test_counter(readings: list[tuple[float, float]], totals: list[float],
                 flags: list[Flag | None], changes: list[str]) -> None:
    counter = Counter(max_rise_per_h=70)
    outcomes = [counter.update(raw, t) for raw, t in readings]
    assert [o.total - outcomes[0].total for o in outcomes] == pytest.approx(totals)
    assert [o.flag for o in outcomes] == flags
    assert [o.change.value for o in outcomes] == changes
    assert all(o.delta == 0 for o in outcomes if o.flag is not None)


@given(
    st.lists(
        st.tuples(
            st.one_of(st.floats(0, 1e7, allow_nan=False), st.sampled_from([0.0, 1.0, 1e9])),
            st.floats(1.0, 7200.0),
        ),
        min_size=1, max_size=60,
    )
)
def test_consumption_never_decreases_nor_sums_a_flagged_reading(
    steps: list[tuple[float, float]],
) -> None:
    counter = Counter(max_rise_per_h=70)
    now, previous, elapsed = 0.0, None, 0.0
    for raw, dt in steps:
        now += dt
        outcome = counter.update(raw, now)
        if previous is not None:
            elapsed += dt
            assert outcome.total >= previous
            assert outcome.total - previous == pytest.approx(outcome.delta, abs=1e-6)
            if outcome.flag is not None:
                assert outcome.delta == 0
            # No step adds more than the breaker allows in the time it had.
            assert outcome.delta <= 70 * 1.05 * elapsed / HOUR + 0.05 + 1e-6
        if outcome.flag is None:
            elapsed = 0.0
        previous = outcome.total


def test_change_values_are_event_kinds() -> None:
    assert {c.value for c in Change} == {"", "reset", "replaced"}
