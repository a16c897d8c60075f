"""Ingest: the sink every driver feeds. It stamps sequence numbers, counts rejects and
what the devices' own numbering says, puts items on the bus, and lets a push driver
await the rules' decision for one of its events (`decide`)."""

from __future__ import annotations

import asyncio
import logging

from gateway.bus import Bus
from gateway.commands import Decision
from gateway.errors import StoreFailed
from gateway.events import Event, Heartbeat, Reading, SeqCounter, Settle
from gateway.metrics import Metrics

log = logging.getLogger("gateway.ingest")

# Each distinct (driver, reason, source) is logged once; past this many we stop
# remembering (a flood of forged device names must not grow memory without bound).
_LOGGED_LIMIT = 10_000
# A plate camera holds its HTTP request open for the answer for a few seconds; past this
# the barrier stays shut (fail safe) and the driver answers "no".
DECIDE_TIMEOUT_S = 2.0


class Decisions:
    """Events a driver awaits a decision for, by event id: the pipeline resolves each
    future once the batch holding the event is committed (or fails it with the store's
    error)."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Decision]] = {}

    def expect(self, event_id: str) -> asyncio.Future[Decision]:
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting[event_id] = fut
        return fut

    def take(self, event_id: str) -> asyncio.Future[Decision] | None:
        return self._waiting.pop(event_id, None) if self._waiting else None

    def forget(self, event_id: str) -> None:
        self._waiting.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._waiting)


class Ingest:
    def __init__(self, bus: Bus, metrics: Metrics, seq: SeqCounter | None = None) -> None:
        self._bus = bus
        self._metrics = metrics
        self.seq = seq or SeqCounter()
        self._logged: set[tuple[str, str, str | None]] = set()
        self.rejects = 0
        self.decisions = Decisions()
        self.decisions_timed_out = 0

    def telemetry(self, item: Reading | Heartbeat) -> None:
        self._bus.put_telemetry(item)

    async def event(self, event: Event) -> None:
        await self._bus.put(event)

    def settle(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._bus.put_telemetry(Settle(done))
        return done

    async def decide(self, event: Event, timeout_s: float = DECIDE_TIMEOUT_S) -> Decision:
        """Queue `event` and wait for its commit and the rules' decision. No decision in
        time, or a failed commit, is a deny (logged): a barrier never opens on a guess."""
        decided = self.decisions.expect(event.id)
        try:
            async with asyncio.timeout(timeout_s):
                await self._bus.put(event)
                return await decided
        except TimeoutError:
            self.decisions_timed_out += 1
            log.warning("no decision in time, denied source=%s kind=%s event=%s timeout_s=%g",
                        event.source, event.kind, event.id, timeout_s)
            return Decision(reason=f"no decision in {timeout_s:g} s")
        except StoreFailed as exc:
            log.warning("event not committed, denied source=%s kind=%s event=%s error=%r",
                        event.source, event.kind, event.id, exc)
            return Decision(reason=f"not committed: {exc}")
        finally:
            self.decisions.forget(event.id)
            if not decided.done():
                decided.cancel()

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
