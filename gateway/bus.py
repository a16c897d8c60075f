"""The bus: three bounded lanes between the drivers and the core.

Alarms pre-empt events, events pre-empt telemetry, but only *across* sources: one
source's events keep the order it sent them. When an alarm comes in for a source whose
earlier events still wait in the event lane, those events move up to the alarm lane
ahead of it (measured: without this, a backlog of alarm, clear, alarm from one detector
was handled as alarm, alarm, clear and left no firing alert). Readings and heartbeats
keep their order among themselves; they carry no flags, so their place relative to a
source's events does not change what fires.

Alarm and event lanes never drop: a producer waits when they are full (back-pressure
reaches the driver, which stops reading its socket). The telemetry lane drops its oldest
reading when full and counts it: a fresher temperature is worth more than a stale one. A
`Settle` marker in that lane is never dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque

from gateway import trace
from gateway.events import Event, Heartbeat, Item, Lane, Reading, Settle

DEFAULT_BOUNDS = {Lane.ALARM: 10_000, Lane.EVENT: 20_000, Lane.TELEMETRY: 100_000}


class Bus:
    def __init__(self, bounds: dict[Lane, int] | None = None) -> None:
        self.bounds = dict(DEFAULT_BOUNDS if bounds is None else bounds)
        self._lanes: dict[Lane, deque[Item]] = {lane: deque() for lane in Lane}
        # How many events of each source wait in the event lane (to know when an alarm
        # must take them along).
        self._waiting_events: dict[str, int] = {}
        self.dropped: dict[Lane, int] = {lane: 0 for lane in Lane}
        self.accepted: dict[Lane, int] = {lane: 0 for lane in Lane}
        self.promoted = 0
        self._ready = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()

    def depth(self, lane: Lane) -> int:
        return len(self._lanes[lane])

    def full(self) -> bool:
        """True while an alarm or event producer would have to wait."""
        return any(len(self._lanes[lane]) >= self.bounds[lane] for lane in (Lane.ALARM,
                                                                            Lane.EVENT))

    async def put(self, item: Item) -> None:
        """Queue one item; waits only while its (never-dropping) lane is full."""
        if not isinstance(item, Event):
            self.put_telemetry(item)
            return
        lane = item.lane
        queue = self._lanes[lane]
        while len(queue) >= self.bounds[lane]:
            self._space.clear()
            await self._space.wait()
        if lane is Lane.ALARM:
            if trace.ON:
                trace.routed(item.id)
            if self._waiting_events.get(item.source):
                self._promote(item.source)
        else:
            self._waiting_events[item.source] = self._waiting_events.get(item.source, 0) + 1
        queue.append(item)
        self.accepted[lane] += 1
        self._ready.set()

    def _promote(self, source: str) -> None:
        """Move `source`'s waiting events to the alarm lane, in order (rare: O(lane))."""
        keep: deque[Item] = deque()
        alarms = self._lanes[Lane.ALARM]
        for queued in self._lanes[Lane.EVENT]:
            if isinstance(queued, Event) and queued.source == source:
                alarms.append(queued)
                self.promoted += 1
            else:
                keep.append(queued)
        self._lanes[Lane.EVENT] = keep
        del self._waiting_events[source]

    def put_telemetry(self, item: Reading | Heartbeat | Settle) -> None:
        """Synchronous fast path for telemetry (never waits; drops oldest when full)."""
        queue = self._lanes[Lane.TELEMETRY]
        if len(queue) >= self.bounds[Lane.TELEMETRY] and not isinstance(item, Settle):
            self._drop_oldest_reading(queue)
        queue.append(item)
        self.accepted[Lane.TELEMETRY] += 1
        self._ready.set()

    def _drop_oldest_reading(self, queue: deque[Item]) -> None:
        markers: list[Item] = []
        while queue:
            oldest = queue.popleft()
            if isinstance(oldest, Settle):
                markers.append(oldest)
                continue
            self.dropped[Lane.TELEMETRY] += 1
            break
        queue.extendleft(reversed(markers))

    def _take(self, lane: Lane) -> Item:
        item = self._lanes[lane].popleft()
        if lane is Lane.EVENT:
            source = item.source  # type: ignore[union-attr]
            left = self._waiting_events[source] - 1
            if left:
                self._waiting_events[source] = left
            else:
                del self._waiting_events[source]
        return item

    async def get_batch(self, limit: int = 1000) -> list[Item]:
        """Wait for work, then take up to `limit` items, alarms first."""
        while True:
            batch: list[Item] = []
            for lane in Lane:
                queue = self._lanes[lane]
                while queue and len(batch) < limit:
                    batch.append(self._take(lane))
                if lane is Lane.ALARM and batch:
                    # An alarm batch goes on alone: it must not wait behind telemetry work.
                    break
            if batch:
                self._space.set()
                return batch
            self._ready.clear()
            await self._ready.wait()

    def drain(self) -> list[Item]:
        """Everything still queued, in the order `get_batch` would have taken it."""
        items: list[Item] = []
        for lane in Lane:
            while self._lanes[lane]:
                items.append(self._take(lane))
        self._space.set()
        return items

    def discard(self) -> list[Settle]:
        """Forget everything queued (the core restarts from the store); returns the
        markers, so their drivers can be told."""
        markers = [i for i in self._lanes[Lane.TELEMETRY] if isinstance(i, Settle)]
        for queue in self._lanes.values():
            queue.clear()
        self._waiting_events.clear()
        self._space.set()
        return markers

    def pending_alarm(self) -> bool:
        return bool(self._lanes[Lane.ALARM])


def is_alarm(item: Item) -> bool:
    return isinstance(item, Event) and item.lane is Lane.ALARM
