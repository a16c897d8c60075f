"""The bus: three bounded lanes between the drivers and the core.

Alarms pre-empt events, events pre-empt telemetry. Alarm and event lanes never drop:
a producer waits when they are full (back-pressure reaches the driver, which stops
reading its socket). The telemetry lane drops its oldest reading when full and
counts it: a fresher temperature is worth more than a stale one.
"""

from __future__ import annotations

import asyncio
from collections import deque

from gateway.events import Event, Heartbeat, Item, Lane, Reading

DEFAULT_BOUNDS = {Lane.ALARM: 10_000, Lane.EVENT: 20_000, Lane.TELEMETRY: 100_000}


class Bus:
    def __init__(self, bounds: dict[Lane, int] | None = None) -> None:
        self.bounds = dict(DEFAULT_BOUNDS if bounds is None else bounds)
        self._lanes: dict[Lane, deque[Item]] = {lane: deque() for lane in Lane}
        self.dropped: dict[Lane, int] = {lane: 0 for lane in Lane}
        self.accepted: dict[Lane, int] = {lane: 0 for lane in Lane}
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def depth(self, lane: Lane) -> int:
        return len(self._lanes[lane])

    async def put(self, item: Item) -> None:
        """Queue one item; waits only while its (never-dropping) lane is full."""
        lane = item.lane
        queue = self._lanes[lane]
        if lane is Lane.TELEMETRY:
            if len(queue) >= self.bounds[lane]:
                queue.popleft()
                self.dropped[lane] += 1
        else:
            while len(queue) >= self.bounds[lane]:
                self._space.clear()
                await self._space.wait()
        queue.append(item)
        self.accepted[lane] += 1
        self._ready.set()

    def put_telemetry(self, item: Reading | Heartbeat) -> None:
        """Synchronous fast path for telemetry (never waits; drops oldest when full)."""
        queue = self._lanes[Lane.TELEMETRY]
        if len(queue) >= self.bounds[Lane.TELEMETRY]:
            queue.popleft()
            self.dropped[Lane.TELEMETRY] += 1
        queue.append(item)
        self.accepted[Lane.TELEMETRY] += 1
        self._ready.set()

    async def get_batch(self, limit: int = 1000) -> list[Item]:
        """Wait for work, then take up to `limit` items, alarms first."""
        while True:
            batch: list[Item] = []
            for lane in Lane:
                queue = self._lanes[lane]
                while queue and len(batch) < limit:
                    batch.append(queue.popleft())
                if lane is Lane.ALARM and batch:
                    # An alarm batch goes on alone: it must not wait behind telemetry work.
                    break
            if batch:
                self._space.set()
                return batch
            self._ready.clear()
            await self._ready.wait()

    def drain(self) -> list[Item]:
        """Everything still queued, alarms first (on shutdown)."""
        items: list[Item] = []
        for lane in Lane:
            items.extend(self._lanes[lane])
            self._lanes[lane].clear()
        self._space.set()
        return items

    def pending_alarm(self) -> bool:
        return bool(self._lanes[Lane.ALARM])


def is_alarm(item: Item) -> bool:
    return isinstance(item, Event) and item.lane is Lane.ALARM
