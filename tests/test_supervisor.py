"""Supervision: full-jitter backoff bounds, restarts, one transition per change, isolation."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from gateway.clock import ManualClock
from gateway.contract import Link
from gateway.errors import AuthError, ProtocolError, SessionTakenOver, StoreFailed, Unreachable
from gateway.supervisor import STABLE_S, Backoff, LinkState, Supervisor, failure_kind


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
    backoff = Backoff(base_s=0.5, cap_s=3.0, patient_s=60.0)
    assert backoff.longest() == 60.0
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


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (AuthError("bad password"), "auth"),
        (SessionTakenOver("another client"), "taken_over"),
        (Unreachable("refused"), "unreachable"),
        (ProtocolError("garbage"), "protocol"),
        (StoreFailed("disk full"), "store"),
        (RuntimeError("a bug"), "other"),
    ],
)
def test_failure_kinds_are_a_bounded_label(error: Exception, kind: str) -> None:
    assert failure_kind(error) == kind


class UpThenDrop:
    """Connects (CONNACK), then the link drops after `uptime` seconds of a manual clock."""

    def __init__(self, clock: ManualClock, uptime: float, error: Exception) -> None:
        self.name = "mqtt:drop"
        self.clock, self.uptime, self.error = clock, uptime, error
        self.runs = 0

    async def run(self, link: Link) -> None:
        self.runs += 1
        link.up()
        self.clock.advance(self.uptime)
        raise self.error


async def run_for(sup: Supervisor, runs: int, driver: UpThenDrop | FlakyDriver) -> None:
    task = asyncio.create_task(sup.run())
    try:
        async with asyncio.timeout(5):
            while driver.runs < runs:
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_link_dropped_right_after_connack_keeps_its_backoff_growing() -> None:
    clock = ManualClock()
    driver = UpThenDrop(clock, 0.1, Unreachable("dropped after CONNACK"))
    sup = Supervisor(driver, backoff=Backoff(base_s=0.0001, cap_s=0.001), clock=clock)
    await run_for(sup, 6, driver)
    assert sup.backoff.attempt >= 5  # never reset by the brief `up`


async def test_a_link_that_stayed_up_starts_its_backoff_afresh() -> None:
    clock = ManualClock()
    driver = UpThenDrop(clock, STABLE_S, Unreachable("dropped after a while"))
    sup = Supervisor(driver, backoff=Backoff(base_s=0.0001, cap_s=0.001), clock=clock)
    await run_for(sup, 6, driver)
    assert sup.backoff.attempt == 1  # reset before each retry, then one step


async def test_a_session_taken_over_waits_and_is_counted() -> None:
    failures: list[tuple[str, str]] = []
    driver = FlakyDriver("mqtt:ingest", 5, SessionTakenOver("another client took it"))
    sup = Supervisor(driver, backoff=Backoff(base_s=0.001, cap_s=0.01, patient_s=5.0),
                     on_failure=lambda link, kind: failures.append((link, kind)))
    task = asyncio.create_task(sup.run())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert driver.runs == 1  # not flapping: waiting out `patient_s`
    assert failures == [("mqtt:ingest", "taken_over")]
    assert sup.failures == {"taken_over": 1}


class Reasons:
    """Fails with each of `reasons` in turn, forever."""

    def __init__(self, reasons: list[Exception]) -> None:
        self.name = "mqtt:reasons"
        self.reasons = reasons
        self.runs = 0

    async def run(self, link: Link) -> None:
        self.runs += 1
        raise self.reasons[(self.runs - 1) % len(self.reasons)]


async def test_each_distinct_reason_is_logged_once_while_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = Reasons([Unreachable("connection refused after 1.5 s"),
                      AuthError("not authorised"),
                      Unreachable("connection refused after 2.7 s")])
    sup = Supervisor(driver, backoff=Backoff(base_s=0.0001, cap_s=0.001, patient_s=0.001))
    caplog.set_level(logging.INFO, logger="gateway.supervisor")
    await run_for(sup, 30, driver)  # type: ignore[arg-type]
    lines = [r.getMessage() for r in caplog.records if "link=mqtt:reasons" in r.getMessage()]
    # Down once (refused), then one line for the new reason (auth); the numbers in a
    # reason do not make it new, and no reason is logged twice.
    assert len(lines) == 2, lines
    assert "connection refused" in lines[0] and "auth: not authorised" in lines[1]
