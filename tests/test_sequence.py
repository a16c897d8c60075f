"""A device's own numbering, judged: new, repeat, lost reports, restart. Pure, from a table."""

from __future__ import annotations

import pytest

from gateway.sequence import REORDER_WINDOW, RESTART_BACKSTEP, Checked, Verdict, check


@pytest.mark.parametrize(
    ("last", "seq", "expected"),
    [
        (None, 7, Checked(Verdict.NEW)),  # nothing seen since start-up
        (7, 8, Checked(Verdict.NEW)),
        (7, 10, Checked(Verdict.NEW, lost=2)),  # 8 and 9 never came
        (7, 7, Checked(Verdict.DUPLICATE)),  # a redelivery
        (7, 5, Checked(Verdict.DUPLICATE)),  # late, out of order
        (2, 1, Checked(Verdict.DUPLICATE)),  # the first report, after the second
        (REORDER_WINDOW, 1, Checked(Verdict.DUPLICATE)),
        (REORDER_WINDOW + 1, 1, Checked(Verdict.RESTARTED)),  # counting again from 1
        (500, 0, Checked(Verdict.RESTARTED)),
        (5000, 5000 - RESTART_BACKSTEP + 1, Checked(Verdict.DUPLICATE)),
        (5000, 5000 - RESTART_BACKSTEP, Checked(Verdict.RESTARTED)),  # far below: rebooted
    ],
)
def test_a_devices_numbering(last: int | None, seq: int, expected: Checked) -> None:
    assert check(last, seq) == expected
