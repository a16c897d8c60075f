"""The driver contract: what a driver is given (a sink, a link) and what it must do.

A driver is a config model plus `async run(link)`: it connects, calls `link.up()` once
its device answers, feeds what it hears into its sink, and raises when the link is lost.
It owns no retry policy; its supervisor restarts it (gateway.supervisor).

Acknowledging a device (a PUBACK, an HTTP answer, a gate's reply) waits for
`Sink.settle()`: everything the driver queued before it is then committed, with every
alert the rules derived from it. A report that could raise an alarm is never
acknowledged before that, so a crash or a failed commit makes the device send it again.

A driver whose devices take commands also implements `Commandable`; the core's
`Commander` routes each command to it by device id after the guard and the audit.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from gateway.events import Event, Heartbeat, Reading

if TYPE_CHECKING:
    from gateway.commands import Command, CommandResult, Decision


class Sink(Protocol):
    """Where a driver delivers what it hears. Implemented by the core's ingest."""

    def telemetry(self, item: Reading | Heartbeat) -> None:
        """Queue telemetry; never waits (the telemetry lane drops its oldest when full)."""

    async def event(self, event: Event) -> None:
        """Queue an event; waits while its lane is full (alarms and events are never
        dropped). A source's events are handled in the order they are queued."""

    def settle(self) -> asyncio.Future[None]:
        """A future that resolves once everything queued so far is committed together
        with what the rules derived from it, or fails (`StoreFailed`) if it never will
        be: then the driver must not acknowledge, and should drop its link."""

    async def decide(self, event: Event, timeout_s: float = ...) -> Decision:
        """Queue an event a device awaits an answer to in its own request (a plate
        camera's HTTP push) and wait for its commit and the rules' decision: the commands
        they derived from it, audited with it. No decision within `timeout_s`, or a
        failed commit, gives an empty decision: deny (fail safe), logged."""

    def next_seq(self, source: str) -> int:
        """The next per-source event sequence number."""

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        """Count one malformed message (`reason` is a bounded label); logs once per reason."""

    def sequence(self, driver: str, source: str, *, lost: int = 0, duplicate: bool = False,
                 restarted: bool = False) -> None:
        """What the device's own sequence numbers said: reports lost in a gap, a duplicate
        (redelivery) that was dropped, or a device that started counting again."""


class Link(Protocol):
    """The supervisor's view of one connection; the driver reports on it."""

    def up(self) -> None:
        """The device (or broker) answered: the link is up."""

    def degraded(self, reason: str) -> None:
        """Connected, but not all is well (e.g. a subscription refused)."""

    def unit_down(self, unit: str, reason: str) -> None:
        """On a shared line (RS-485, a bus of units): one unit, by its device id, stopped
        answering while the line is up. Once per transition is enough; repeats are
        ignored."""

    def unit_up(self, unit: str) -> None:
        """That unit answers again."""


class Driver(Protocol):
    name: str

    async def run(self, link: Link) -> None:
        """Connect and loop until the link is lost (then raise) or the task is cancelled."""


class Commandable(Protocol):
    """A driver whose devices take commands. Optional: most drivers only listen."""

    async def execute(self, command: Command) -> CommandResult:
        """Carry out one command that the guard allowed and the audit recorded, and say
        what happened: `verified` where the device reads back the new state,
        `unverified` where it only accepted, `failed` otherwise. Raising counts as
        failed; the commander bounds the time it waits."""
