"""The event model: what every driver produces and every later stage consumes.

An `Event` is something that happened (an alarm, a fault, a plate read); a `Reading`
is one telemetry value. Both are immutable. Event ids sort by time (a ULID-like
48-bit millisecond timestamp + 80 random bits, Crockford base32), and every source
numbers its events with a monotonic `seq` so a receiver can prove none is missing.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now: float | None = None) -> str:
    """A 26-character, time-sortable, unique id (ULID layout)."""
    ms = int((time.time() if now is None else now) * 1000)
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


class Severity(enum.IntEnum):
    INFO = 0
    MINOR = 1
    MAJOR = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


class Lane(enum.IntEnum):
    """Priority lanes of the bus; lower value is served first."""

    ALARM = 0
    EVENT = 1
    TELEMETRY = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # dotted, e.g. "fire.detector.alarm"
    source: str  # device id from the site file
    seq: int  # per-source, monotonic
    time: float  # UTC epoch seconds when the gateway received it
    severity: Severity = Severity.INFO
    zone: str = ""
    device_time: float | None = None  # the device's own clock, when it has one
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", new_id(self.time))

    @property
    def lane(self) -> Lane:
        if self.severity >= Severity.MAJOR:
            return Lane.ALARM
        return Lane.EVENT


class Reading(NamedTuple):
    """One measured value. A named tuple, not a frozen dataclass: every routine report
    makes two of these and a `Heartbeat`, and a tuple is built in a third of the time
    (a frozen dataclass sets each field through `object.__setattr__`)."""

    source: str
    metric: str  # e.g. "temperature"
    value: float
    unit: str  # e.g. "celsius"
    time: float  # UTC epoch seconds when received
    device_time: float | None = None

    @property
    def lane(self) -> Lane:
        return Lane.TELEMETRY


class Heartbeat(NamedTuple):
    """A device proved it is alive without telling anything else (silence detection)."""

    source: str
    time: float

    @property
    def lane(self) -> Lane:
        return Lane.TELEMETRY


@dataclass(frozen=True, slots=True, eq=False)
class Settle:
    """A marker a driver queues behind its items: `future` resolves once everything queued
    before it (by any driver) is committed, together with every alert the rules derived
    from it; or fails with the store's error. Drivers acknowledge their devices then."""

    future: asyncio.Future[None]

    @property
    def lane(self) -> Lane:
        return Lane.TELEMETRY


Item = Event | Reading | Heartbeat | Settle


class SeqCounter:
    """Per-source monotonic sequence numbers for events the gateway itself creates."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def next(self, source: str) -> int:
        n = self._next.get(source, 0) + 1
        self._next[source] = n
        return n

    def restore(self, source: str, last: int) -> None:
        """Continue after `last` (the highest seq already stored for `source`)."""
        if last >= self._next.get(source, 0):
            self._next[source] = last
