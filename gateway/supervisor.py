"""Supervision: one supervisor per connection restarts its driver with full-jitter backoff,
keeps the link state and logs once per transition. One failing link never touches another.

- The backoff resets only once a link has stayed up for `STABLE_S`: a broker that drops
  the link right after CONNACK is not retried at full speed.
- A wrong password, a refused ACL, or another client that took over the session waits
  `patient_s`: retrying those fast only locks accounts or makes two clients flap.
- Each distinct failure reason is logged once, even while the link is already down
  (numbers in the reason do not make it distinct).

Given a sink and a family, each transition is also an event, once per transition:
`<family>.down` / `.up` / `.degraded` for the link (`camera.stream.down`), and
`<family>.unit.down` / `.unit.up` for one unit behind a shared line (unit 7 down on an
RS-485 line that is up), with the unit's device id as source."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.clock import Clock, SystemClock
from gateway.contract import Driver, Sink
from gateway.errors import (
    AuthError,
    DeliveryError,
    ProtocolError,
    SessionTakenOver,
    StoreFailed,
    Unreachable,
)
from gateway.events import Event, Severity

log = logging.getLogger("gateway.supervisor")


class LinkState(enum.StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    STALE = "stale"


@dataclass
class Backoff:
    """Full jitter (AWS architecture blog): sleep uniform(0, min(cap, base * 2**attempt))."""

    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    rng: random.Random | None = None
    # Failures a fast retry cannot fix (credentials, a session taken over) wait this long.
    patient_s: float = 60.0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return (self.rng or random).uniform(0, ceiling)

    def longest(self) -> float:
        """Auth failures wait the longest: retrying a wrong password fast only locks accounts."""
        self.attempt = 30
        return max(self.cap_s, self.patient_s)

    def reset(self) -> None:
        self.attempt = 0


Transition = Callable[[str, LinkState, str], None]
# (link, kind): kind is a bounded label (auth, taken_over, unreachable, ...) for metrics.
FailureHook = Callable[[str, str], None]

# A link up this long has proven itself: its next failure starts the backoff again.
STABLE_S = 10.0


def failure_kind(exc: BaseException) -> str:
    """A bounded label for what ended a link."""
    if isinstance(exc, SessionTakenOver):
        return "taken_over"
    for kind, types in (("auth", AuthError), ("store", StoreFailed), ("delivery", DeliveryError),
                        ("protocol", ProtocolError), ("unreachable", Unreachable)):
        if isinstance(exc, types):
            return kind
    return "other"


def _shape(reason: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "#", reason)


class Supervisor:
    """Runs one driver forever: restart on failure, state up/degraded/down, log on change."""

    def __init__(
        self,
        driver: Driver,
        *,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        on_transition: Transition | None = None,
        on_failure: FailureHook | None = None,
        sink: Sink | None = None,
        family: str | None = None,
    ) -> None:
        self.driver = driver
        self.name = driver.name
        self.backoff = backoff or Backoff()
        self.clock = clock or SystemClock()
        self.state = LinkState.DOWN
        self.since = self.clock.now()
        self.restarts = 0
        self._on_transition = on_transition
        self._on_failure = on_failure
        self._started = False
        self._logged_shapes: set[str] = set()
        self._up_at: float | None = None
        self.failures: dict[str, int] = {}
        self._sink = sink if family is not None else None
        self._family = family
        self.units: dict[str, str] = {}  # unit (device id) -> "up" / "down" + reason
        self._emitting: asyncio.Task[None] | None = None

    def _set(self, state: LinkState, reason: str) -> None:
        if state is self.state and self._started:
            shape = _shape(reason)
            if (state is not LinkState.UP and shape not in self._logged_shapes
                    and len(self._logged_shapes) < 32):
                self._logged_shapes.add(shape)
                log.warning("link=%s state=%s reason=%s (a new reason; still %s)",
                            self.name, state, reason, state)
            return
        self._started = True
        self._logged_shapes = {_shape(reason)}
        previous, self.state, self.since = self.state, state, self.clock.now()
        level = logging.INFO if state is LinkState.UP else logging.WARNING
        log.log(level, "link=%s state=%s previous=%s reason=%s", self.name, state, previous,
                reason)
        if self._on_transition is not None:
            self._on_transition(self.name, state, reason)
        self._emit(self.name, str(state), reason,
                   Severity.INFO if state is LinkState.UP else Severity.MAJOR)

    def _emit(self, source: str, what: str, reason: str, severity: Severity) -> None:
        sink = self._sink
        if sink is None:
            return
        event = Event(f"{self._family}.{what}", source, seq=sink.next_seq(source),
                      time=self.clock.now(), severity=severity,
                      data={"link": self.name, "reason": reason})
        # Chained, so the events keep the transitions' order even while their lane is full.
        self._emitting = asyncio.get_running_loop().create_task(
            _after(self._emitting, sink.event(event)), name=f"link-event:{self.name}"
        )
        self._emitting.add_done_callback(_log_failure)

    # Link protocol, called by the driver
    def up(self) -> None:
        self._up_at = self.clock.monotonic()
        self._set(LinkState.UP, "connected")

    def degraded(self, reason: str) -> None:
        self._set(LinkState.DEGRADED, reason)

    def unit_down(self, unit: str, reason: str) -> None:
        """One unit behind this link stopped answering; the link itself may be up."""
        if self.units.get(unit) == "down":
            return
        self.units[unit] = "down"
        log.warning("link=%s unit=%s state=down reason=%s", self.name, unit, reason)
        self._emit(unit, "unit.down", reason[:200], Severity.MAJOR)

    def unit_up(self, unit: str) -> None:
        """A unit answers (again). The first answer after start-up is no news."""
        previous = self.units.get(unit)
        self.units[unit] = "up"
        if previous == "down":
            log.info("link=%s unit=%s state=up", self.name, unit)
            self._emit(unit, "unit.up", "answering", Severity.INFO)

    async def flushed(self) -> None:
        """Wait until every transition event so far is queued (tests, shutdown)."""
        if self._emitting is not None:
            await self._emitting

    async def run(self) -> None:
        while True:
            try:
                await self.driver.run(self)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any driver failure means: restart it
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # A cancel that met the driver's own failure (a TaskGroup inside it
                    # reports the failure, not the cancel): stopping wins.
                    raise asyncio.CancelledError from exc
                kind = failure_kind(exc)
                self._stable_check()
                if kind in ("auth", "taken_over"):
                    reason = f"{kind}: {exc}"
                    delay = self.backoff.longest()
                else:
                    reason = f"{type(exc).__name__}: {exc}"
                    delay = self.backoff.next_delay()
                self.failures[kind] = self.failures.get(kind, 0) + 1
                if self._on_failure is not None:
                    self._on_failure(self.name, kind)
            else:
                self._stable_check()
                reason = "driver returned"
                delay = self.backoff.next_delay()
            self.restarts += 1
            self._set(LinkState.DOWN, reason[:200])
            await asyncio.sleep(delay)

    def _stable_check(self) -> None:
        """The link just ended: if it had been up long enough, start the backoff afresh."""
        if self._up_at is not None and self.clock.monotonic() - self._up_at >= STABLE_S:
            self.backoff.reset()
        self._up_at = None

def _log_failure(task: asyncio.Task[None]) -> None:
    """The chain is awaited only by `flushed()`: a failed event must still leave a line."""
    if not task.cancelled() and task.exception() is not None:
        log.error("link event failed task=%s", task.get_name(), exc_info=task.exception())


async def _after(previous: asyncio.Task[None] | None, put: Coroutine[Any, Any, None]) -> None:
    if previous is not None:
        with contextlib.suppress(Exception):
            await previous
    await put
