"""Ingest: the sink every driver feeds. It stamps sequence numbers, counts rejects and
what the devices' own numbering says, and puts items on the bus; nothing else."""

from __future__ import annotations

import asyncio
import logging

from gateway.bus import Bus
from gateway.events import Event, Heartbeat, Reading, SeqCounter, Settle
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
        self.rejects = 0

    def telemetry(self, item: Reading | Heartbeat) -> None:
        self._bus.put_telemetry(item)

    async def event(self, event: Event) -> None:
        await self._bus.put(event)

    def settle(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._bus.put_telemetry(Settle(done))
        return done

    def next_seq(self, source: str) -> int:
        return self.seq.next(source)

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        self.rejects += 1
        self._metrics.rejected(driver, reason)
        self._log_once(driver, reason, source,
                       "payload rejected driver=%s reason=%s source=%s detail=%r "
                       "(further rejects of this kind are only counted)", detail[:200])

    def sequence(self, driver: str, source: str, *, lost: int = 0, duplicate: bool = False,
                 restarted: bool = False) -> None:
        if lost:
            self._metrics.reports_lost(driver, lost)
            self._log_once(driver, "lost", source,
                           "device reports lost driver=%s reason=%s source=%s lost=%r "
                           "(further gaps of this device are only counted)", lost)
        if duplicate:
            self._metrics.reports_duplicate(driver)
        if restarted:
            self._metrics.device_seq_restarted(driver)
            self._log_once(driver, "restarted", source,
                           "device numbering restarted driver=%s reason=%s source=%s%s "
                           "(further restarts are only counted)", "")

    def _log_once(self, driver: str, reason: str, source: str | None, fmt: str,
                  detail: object) -> None:
        key = (driver, reason, source)
        if key not in self._logged and len(self._logged) < _LOGGED_LIMIT:
            self._logged.add(key)
            log.warning(fmt, driver, reason, source or "-", detail)
