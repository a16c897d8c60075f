"""Supervision: full-jitter backoff bounds, restarts, one transition per change, isolation."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from gateway.contract import Link
from gateway.errors import AuthError, Unreachable
from gateway.supervisor import Backoff, LinkState, Supervisor


def test_full_jitter_stays_under_the_doubling_ceiling() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(1))
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    delays = [backoff.next_delay() for _ in ceilings]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert 0.0 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_auth_failure_goes_to_the_longest_backoff() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0)
    assert backoff.longest() == 30.0
    assert backoff.attempt == 30


class FlakyDriver:
    """Fails `failures` times, then connects and stays up until cancelled."""

    def __init__(self, name: str, failures: int, error: Exception) -> None:
        self.name = name
        self.failures = failures
        self.error = error
        self.runs = 0

    async def run(self, link: Link) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.error
        link.up()
        await asyncio.Event().wait()


async def test_a_failing_link_restarts_and_never_touches_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transitions: list[tuple[str, LinkState]] = []
    flaky = FlakyDriver("mqtt:flaky", 3, Unreachable("connection refused"))
    steady = FlakyDriver("mqtt:steady", 0, Unreachable("never"))
    sups = [
        Supervisor(d, backoff=Backoff(base_s=0.001, cap_s=0.01),
                   on_transition=lambda n, s, r: transitions.append((n, s)))
        for d in (flaky, steady)
    ]
    caplog.set_level(logging.INFO, logger="gateway.supervisor")
    tasks = [asyncio.create_task(s.run()) for s in sups]
    try:
        async with asyncio.timeout(5):
            while sups[0].state is not LinkState.UP:
                await asyncio.sleep(0.005)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert flaky.runs == 4 and sups[0].restarts == 3
    assert steady.runs == 1 and sups[1].restarts == 0
    # Three failures in a row are ONE transition to down, then one to up.
    assert [t for t in transitions if t[0] == "mqtt:flaky"] == [
        ("mqtt:flaky", LinkState.DOWN), ("mqtt:flaky", LinkState.UP)]
    assert transitions.count(("mqtt:steady", LinkState.UP)) == 1
    down_lines = [r for r in caplog.records if "link=mqtt:flaky state=down" in r.getMessage()]
    assert len(down_lines) == 1


async def test_auth_errors_wait_the_longest() -> None:
    driver = FlakyDriver("mqtt:auth", 5, AuthError("not authorised"))
    sup = Supervisor(driver, backoff=Backoff(base_s=0.001, cap_s=5.0))
    task = asyncio.create_task(sup.run())
    await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sup.state is LinkState.DOWN
    assert sup.backoff.attempt == 30
    assert driver.runs == 1  # still waiting out the longest backoff
