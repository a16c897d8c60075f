"""A device's own sequence numbers: what is new, what is a repeat, what was lost. Pure.

Where a device numbers its reports, a report at or below the last one seen is a
redelivery (or arrived out of order) and is dropped; a jump forward means reports were
lost on the way (QoS 0 telemetry during an outage); a number far below the last, or a
0 or 1 once the last is past the reorder window, means the device restarted and counts
again from the start. Inside the window a 1 is a late report: a backlog may deliver a
device's first report after its second, and a clear taken for a restart would undo the
alarm that followed it (found by the model-based invariant test).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# How far back a number may lie and still be a late repeat rather than a device that
# restarted: a broker redelivers at most its in-flight window plus the queued backlog of
# one device, which is far below this for a detector reporting every few seconds.
RESTART_BACKSTEP = 1_000
# A device's first reports may arrive late and out of order within this many.
REORDER_WINDOW = 64


class Verdict(enum.Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    RESTARTED = "restarted"


@dataclass(frozen=True, slots=True)
class Checked:
    verdict: Verdict
    lost: int = 0  # reports missing between the last one seen and this one


# The answers that carry no count, built once: every report is judged, and the usual
# answer (the next number, nothing lost) must not cost an object each time.
_NEW = Checked(Verdict.NEW)
_RESTARTED = Checked(Verdict.RESTARTED)
_DUPLICATE = Checked(Verdict.DUPLICATE)


def check(last: int | None, seq: int) -> Checked:
    """Judge `seq` against `last` (None: nothing seen since the gateway started)."""
    if last is None:
        return _NEW
    if seq > last:
        return _NEW if seq == last + 1 else Checked(Verdict.NEW, lost=seq - last - 1)
    if seq < last and ((seq <= 1 and last > REORDER_WINDOW) or last - seq >= RESTART_BACKSTEP):
        return _RESTARTED
    return _DUPLICATE
