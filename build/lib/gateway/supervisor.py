"""Supervision: one supervisor per connection restarts its driver with full-jitter backoff,
keeps the link state and logs once per transition. One failing link never touches another."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from gateway.clock import Clock, SystemClock
from gateway.contract import Driver
from gateway.errors import AuthError

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

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return (self.rng or random).uniform(0, ceiling)

    def longest(self) -> float:
        """Auth failures wait the longest: retrying a wrong password fast only locks accounts."""
        self.attempt = 30
        return self.cap_s

    def reset(self) -> None:
        self.attempt = 0


Transition = Callable[[str, LinkState, str], None]


class Supervisor:
    """Runs one driver forever: restart on failure, state up/degraded/down, log on change."""

    def __init__(
        self,
        driver: Driver,
        *,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        on_transition: Transition | None = None,
    ) -> None:
        self.driver = driver
        self.name = driver.name
        self.backoff = backoff or Backoff()
        self.clock = clock or SystemClock()
        self.state = LinkState.DOWN
        self.since = self.clock.now()
        self.restarts = 0
        self._on_transition = on_transition
        self._started = False

    def _set(self, state: LinkState, reason: str) -> None:
        if state is self.state and self._started:
            return
        self._started = True
        previous, self.state, self.since = self.state, state, self.clock.now()
        level = logging.INFO if state is LinkState.UP else logging.WARNING
        log.log(level, "link=%s state=%s previous=%s reason=%s", self.name, state, previous,
                reason)
        if self._on_transition is not None:
            self._on_transition(self.name, state, reason)

    # Link protocol, called by the driver
    def up(self) -> None:
        self.backoff.reset()
        self._set(LinkState.UP, "connected")

    def degraded(self, reason: str) -> None:
        self._set(LinkState.DEGRADED, reason)

    async def run(self) -> None:
        while True:
            try:
                await self.driver.run(self)
                reason = "driver returned"
                delay = self.backoff.next_delay()
            except asyncio.CancelledError:
                raise
            except AuthError as exc:
                reason = f"auth: {exc}"
                delay = self.backoff.longest()
            except Exception as exc:  # any driver failure means: restart it
                reason = f"{type(exc).__name__}: {exc}"
                delay = self.backoff.next_delay()
            self.restarts += 1
            self._set(LinkState.DOWN, reason[:200])
            await asyncio.sleep(delay)
