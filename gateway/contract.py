"""The driver contract: what a driver is given (a sink, a link) and what it must do.

A driver is a config model plus `async run(link)`: it connects, calls `link.up()` once
its device answers, feeds what it hears into its sink, and raises when the link is lost.
It owns no retry policy; its supervisor restarts it (gateway.supervisor).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.events import Event, Heartbeat, Reading


class Sink(Protocol):
    """Where a driver delivers what it hears. Implemented by the core's ingest."""

    def telemetry(self, item: Reading | Heartbeat) -> None:
        """Queue telemetry; never waits (the telemetry lane drops its oldest when full)."""

    async def event(self, event: Event) -> asyncio.Future[None]:
        """Queue an event; waits while its lane is full (alarms and events are never dropped).
        The returned future resolves once the event is committed to the store (or raises
        if the store failed): a driver acknowledges its device only then."""

    def next_seq(self, source: str) -> int:
        """The next per-source event sequence number."""

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        """Count one malformed message (`reason` is a bounded label); logs once per reason."""


class Link(Protocol):
    """The supervisor's view of one connection; the driver reports on it."""

    def up(self) -> None:
        """The device (or broker) answered: the link is up, backoff is reset."""

    def degraded(self, reason: str) -> None:
        """Connected, but not all is well (e.g. a subscription refused)."""


class Driver(Protocol):
    name: str

    async def run(self, link: Link) -> None:
        """Connect and loop until the link is lost (then raise) or the task is cancelled."""
