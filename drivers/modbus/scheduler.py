"""One scheduler per physical endpoint (a TCP peer or an RS-485 line): it owns the link's
transactions and decides what goes on the wire next.

- Transactions are serialised (one outstanding request per link), with the 3.5-character
  inter-frame gap between them where the framing is RTU.
- Every unit has its own state: a silent unit backs off on its own schedule and costs the
  line one timeout now and then, never every cycle; the others keep their interval.
- Commands (writes) pre-empt queued polls: they go before the next poll, never after it.
- Units start staggered over their interval, so a line is not hit by all of them at once.
- A unit whose profile gives a register two addresses (firmware variants), or bridges
  the holes of its map, is probed: an "illegal address" answer before it ever answered
  moves it to its next plan.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from drivers.modbus.adapter import ILLEGAL_ADDRESS, BadAnswer, ExceptionAnswer, NoAnswer, Request
from drivers.modbus.blocks import Block, Decoder, decoder
from gateway.clock import Clock, SystemClock
from gateway.errors import Unreachable

log = logging.getLogger("drivers.modbus.scheduler")
_R = TypeVar("_R")

# A silent unit is tried again after interval x 2**n, capped here: a dead meter costs the
# line one timeout a minute at most, and is found again within a minute of coming back.
BACKOFF_CAP_S = 60.0
# When no unit on the link has answered this many polls in a row, the link is taken as
# lost (a serial server whose line is cut answers TCP but nothing else).
ALL_SILENT_POLLS = 3
# Bits per character on RS-485: start, 8 data, parity or second stop, stop.
_BITS_PER_CHAR = 11


def inter_frame_gap_s(baud: int) -> float:
    """3.5 character times (Modbus over serial line, 2.5.1.1); fixed at 1.75 ms above
    19200 baud, as the specification says."""
    if baud > 19200:
        return 0.00175
    return 3.5 * _BITS_PER_CHAR / baud


class Transactions(Protocol):
    """What the scheduler needs of a link (drivers.modbus.adapter.ModbusLink)."""

    async def read(self, request: Request) -> list[int]: ...

    async def write(self, unit: int, address: int, values: Sequence[int], *,
                    single: bool = False) -> None: ...

    async def write_coil(self, unit: int, address: int, value: bool) -> None: ...


class UnitState(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass
class UnitPoll:
    """What to read from one unit, and how often. `plans` holds the block plan per firmware
    variant, the one in use first."""

    key: str  # the device id
    unit: int
    plans: list[list[Block]]
    interval_s: float
    single_register_writes: bool = False


@dataclass
class _Unit:
    poll: UnitPoll
    due: float
    state: UnitState = UnitState.UNKNOWN
    failures: int = 0
    answered_once: bool = False
    probed: int = 0

    # The plan in use as (block, its request), made once per plan, not once per poll.
    reads: list[tuple[Block, Request, Decoder]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.use_plan()

    def use_plan(self) -> None:
        self.reads = [(b, Request(b.function, self.poll.unit, b.start, b.count), decoder(b))
                      for b in self.poll.plans[0]]

    @property
    def blocks(self) -> list[Block]:
        return self.poll.plans[0]


@dataclass(order=True)
class _Command:
    priority: int
    seq: int
    unit: int = field(compare=False)
    address: int = field(compare=False)
    values: tuple[int, ...] = field(compare=False)
    single: bool = field(compare=False)
    done: asyncio.Future[Any] = field(compare=False)
    # Any other transaction to run ahead of the polls (a coil write, a read-back).
    op: Callable[[Transactions], Awaitable[Any]] | None = field(default=None, compare=False)


def _due(unit: _Unit) -> float:
    return unit.due


def _settle(woken: asyncio.Future[bool]) -> None:
    if not woken.done():
        woken.set_result(False)


Values = Callable[[str, dict[str, float], float], None]
StateChange = Callable[[str, UnitState, str], None]
Fault = Callable[[str, str, str], None]


class LineScheduler:
    def __init__(
        self,
        link: Transactions,
        polls: Sequence[UnitPoll],
        *,
        on_values: Values,
        on_state: StateChange,
        on_fault: Fault,
        gap_s: float = 0.0,
        clock: Clock | None = None,
        stagger: bool = True,
        on_late: Callable[[float], None] | None = None,
    ) -> None:
        self._link = link
        self._clock = clock or SystemClock()
        self._gap_s = gap_s
        self._on_values = on_values
        self._on_state = on_state
        self._on_fault = on_fault
        self._on_late = on_late  # seconds a poll started after it was due (benchmarks)
        now = self._clock.monotonic()
        n = max(1, len(polls))
        self._units = [
            _Unit(poll, now + (i * poll.interval_s / n if stagger else 0.0))
            for i, poll in enumerate(polls)
        ]
        self._commands: list[_Command] = []
        self._seq = itertools.count()
        self._woken: asyncio.Future[bool] | None = None
        self.polls = 0
        self.transactions = 0
        self.completed: collections.Counter[str] = collections.Counter()  # polls, by device

    def unit_state(self, key: str) -> UnitState:
        for unit in self._units:
            if unit.poll.key == key:
                return unit.state
        raise KeyError(key)

    async def write(self, unit: int, address: int, values: Sequence[int], *,
                    priority: int = 0) -> None:
        """Write holding registers ahead of every queued poll; returns once written."""
        single = any(u.poll.single_register_writes for u in self._units if u.poll.unit == unit)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._commands, _Command(priority, next(self._seq), unit, address,
                                                tuple(values), single, done))
        self._kick()
        await done

    async def transact(self, op: Callable[[Transactions], Awaitable[_R]], *,
                       priority: int = 0) -> _R:
        """Run one transaction of the caller's (a coil write, a read-back) ahead of every
        queued poll, serialised with the rest of the line; returns its result."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._commands, _Command(priority, next(self._seq), 0, 0, (), False,
                                                done, op))
        self._kick()
        result: _R = await done
        return result

    async def run(self) -> None:
        if not self._units:
            await asyncio.Event().wait()
        while True:
            if self._commands:
                await self._command(heapq.heappop(self._commands))
                continue
            unit = min(self._units, key=_due)
            wait = unit.due - self._clock.monotonic()
            if wait > 0 and await self._sleep(wait):
                continue  # a command came in
            await self._poll(unit)

    async def _sleep(self, wait: float) -> bool:
        """Wait `wait` seconds or until a command comes in (then True). One timer and one
        future per wait: no timeout scope, no exception on the usual path."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[bool] = loop.create_future()
        self._woken = woken
        timer = loop.call_later(wait, _settle, woken)
        try:
            return await woken
        finally:
            timer.cancel()
            self._woken = None

    def _kick(self) -> None:
        woken = self._woken
        if woken is not None and not woken.done():
            woken.set_result(True)

    async def _transaction(self) -> None:
        self.transactions += 1
        if self._gap_s:
            await asyncio.sleep(self._gap_s)

    async def _command(self, command: _Command) -> None:
        result: Any = None
        try:
            if command.op is not None:
                result = await command.op(self._link)
            else:
                await self._link.write(command.unit, command.address, command.values,
                                       single=command.single)
        except Unreachable as exc:
            command.done.set_exception(exc)
            raise
        except Exception as exc:  # the caller gets its own failure; the line goes on
            command.done.set_exception(exc)
        else:
            command.done.set_result(result)
        finally:
            await self._transaction()

    async def _poll(self, unit: _Unit) -> None:
        self.polls += 1
        if self._on_late is not None:
            self._on_late(max(0.0, self._clock.monotonic() - unit.due))
        values: dict[str, float] = {}
        silent = reprobe = False
        for _block, request, decode in unit.reads:
            try:
                words = await self._link.read(request)
                values.update(decode(words))
            except NoAnswer:
                silent = True
                break  # the unit is silent: do not spend the line on its other blocks
            except ExceptionAnswer as exc:
                if exc.code == ILLEGAL_ADDRESS and self._next_plan(unit):
                    reprobe = True
                    break
                self._on_fault(unit.poll.key, "exception_code", f"{request}: {exc}")
            except (BadAnswer, ValueError) as exc:
                self._on_fault(unit.poll.key, "bad_answer", f"{request}: {exc}")
            finally:
                await self._transaction()
        if reprobe:
            return
        self.completed[unit.poll.key] += 1
        now = self._clock.monotonic()
        if silent:
            unit.failures += 1
            backoff = min(BACKOFF_CAP_S, unit.poll.interval_s * 2 ** min(unit.failures, 16))
            unit.due = now + backoff
            self._set(unit, UnitState.DOWN, "no answer")
            if all(u.failures >= ALL_SILENT_POLLS for u in self._units):
                raise Unreachable(f"no unit answered {ALL_SILENT_POLLS} polls in a row")
            return
        unit.failures = 0
        unit.answered_once = True
        # Keep the phase; a unit that fell behind (a slow line) starts again from now.
        unit.due = max(unit.due + unit.poll.interval_s, now)
        self._set(unit, UnitState.UP, "answered")
        if values:
            self._on_values(unit.poll.key, values, self._clock.now())

    def _next_plan(self, unit: _Unit) -> bool:
        """Probe the next firmware variant; False once every one was tried."""
        if len(unit.poll.plans) < 2 or unit.answered_once:
            return False
        if unit.probed + 1 >= len(unit.poll.plans):
            return False
        unit.probed += 1
        unit.poll.plans.append(unit.poll.plans.pop(0))
        unit.use_plan()
        log.info("device=%s refused a read: trying its next read plan (firmware variant, or"
                 " without the gap bridge)", unit.poll.key)
        unit.due = self._clock.monotonic()
        return True

    def _set(self, unit: _Unit, state: UnitState, reason: str) -> None:
        if unit.state is state:
            return
        unit.state = state
        self._on_state(unit.poll.key, state, reason)
