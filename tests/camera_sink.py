"""A sink that keeps what the camera drivers hand it, for the camera tests: the core's
`Sink` seam, recorded in order (events with their kind and source)."""

from __future__ import annotations

import asyncio
from collections import Counter

from gateway.commands import Decision
from gateway.events import Event, Heartbeat, Reading


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.readings: list[Reading] = []
        self.rejections: Counter[tuple[str, str]] = Counter()  # (source, reason)
        self._seq: Counter[str] = Counter()

    def telemetry(self, item: Reading | Heartbeat) -> None:
        if isinstance(item, Reading):
            self.readings.append(item)

    async def event(self, event: Event) -> None:
        self.events.append(event)

    def settle(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    async def decide(self, event: Event, timeout_s: float = 5.0) -> Decision:
        raise NotImplementedError("cameras decide nothing")

    def next_seq(self, source: str) -> int:
        self._seq[source] += 1
        return self._seq[source]

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        self.rejections[(source or "", reason)] += 1

    def sequence(self, driver: str, source: str, *, lost: int = 0, duplicate: bool = False,
                 restarted: bool = False) -> None:
        return None

    def kinds(self, source: str) -> list[str]:
        return [e.kind for e in self.events if e.source == source]
