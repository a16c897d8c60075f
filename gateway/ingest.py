"""Ingest: the sink every driver feeds. It stamps sequence numbers, counts rejects and
puts items on the bus; nothing else."""

from __future__ import annotations

import asyncio
import logging

from gateway.bus import Bus
from gateway.events import Event, Heartbeat, Reading, SeqCounter
from gateway.metrics import Metrics

log = logging.getLogger("gateway.ingest")

# Each distinct (driver, reason, source) is logged once; past this many we stop
# remembering (a flood of forged device names must not grow memory without bound).
_LOGGED_LIMIT = 10_000


class Ingest:
    def __init__(self, bus: Bus, metrics: Metrics, seq: SeqCounter | None = None) -> None:
        self._bus = bus
        self._metrics = metrics
        self.seq = seq or SeqCounter()
        self._logged: set[tuple[str, str, str | None]] = set()
        self._committing: dict[str, asyncio.Future[None]] = {}
        self.rejects = 0

    def telemetry(self, item: Reading | Heartbeat) -> None:
        self._bus.put_telemetry(item)

    async def event(self, event: Event) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._committing[event.id] = done
        await self._bus.put(event)
        return done

    def committed(self, event_ids: list[str], error: BaseException | None) -> None:
        """The store committed (or failed to commit) these events."""
        for event_id in event_ids:
            done = self._committing.pop(event_id, None)
            if done is None or done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    def next_seq(self, source: str) -> int:
        return self.seq.next(source)

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        self.rejects += 1
        self._metrics.rejected(driver, reason)
        key = (driver, reason, source)
        if key not in self._logged and len(self._logged) < _LOGGED_LIMIT:
            self._logged.add(key)
            log.warning(
                "payload rejected driver=%s reason=%s source=%s detail=%r "
                "(further rejects of this kind are only counted)",
                driver, reason, source or "-", detail[:200],
            )
