"""The line scheduler against a scripted line (the `Transactions` seam): commands before
polls, a silent unit kept off the line, firmware probing, a line where nothing answers."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest

from drivers.modbus.adapter import ExceptionAnswer, NoAnswer, Request
from drivers.modbus.blocks import Block, Tag
from drivers.modbus.profile import Register
from drivers.modbus.scheduler import LineScheduler, UnitPoll, UnitState, inter_frame_gap_s
from gateway.errors import Unreachable


class Line:
    def __init__(self, *, silent: Sequence[int] = (), illegal: Sequence[int] = ()) -> None:
        self.ops: list[tuple[str, int, int]] = []
        self.silent = set(silent)
        self.illegal = set(illegal)  # addresses answered with "illegal address"

    async def read(self, request: Request) -> list[int]:
        self.ops.append(("read", request.unit, request.address))
        await asyncio.sleep(0.001)
        if request.unit in self.silent:
            raise NoAnswer("silent")
        if request.address in self.illegal:
            raise ExceptionAnswer(request.function, 2)
        return [request.address] * request.count

    async def write(self, unit: int, address: int, values: Sequence[int], *,
                    single: bool = False) -> None:
        self.ops.append(("write", unit, address))


def _block(address: int, metric: str = "") -> Block:
    reg = Register.model_validate({"metric": metric or f"r{address}", "function": 3,
                                   "address": address, "type": "uint16"})
    return Block(3, address, 1, (Tag(reg, address, "big"),))


def _poll(key: str, unit: int, addresses: Sequence[int], interval: float = 0.01) -> UnitPoll:
    return UnitPoll(key, unit, [[_block(a) for a in addresses]], interval)


class Recorder:
    def __init__(self) -> None:
        self.values: list[tuple[str, dict[str, float]]] = []
        self.states: list[tuple[str, UnitState]] = []
        self.faults: list[tuple[str, str]] = []

    def scheduler(self, line: Line, polls: Sequence[UnitPoll], **kw: float) -> LineScheduler:
        return LineScheduler(
            line, polls, on_values=lambda k, v, t: self.values.append((k, v)),
            on_state=lambda k, s, r: self.states.append((k, s)),
            on_fault=lambda k, r, d: self.faults.append((k, r)), **kw)  # type: ignore[arg-type]


async def _run_until(scheduler: LineScheduler, done: object) -> None:
    task = asyncio.create_task(scheduler.run())
    try:
        async with asyncio.timeout(20):
            while not done():  # type: ignore[operator]
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(("baud", "gap_ms"), [(9600, 4.01), (19200, 2.005), (38400, 1.75),
                                              (115200, 1.75), (1200, 32.08)])
def test_inter_frame_gap_is_three_and_a_half_characters(baud: int, gap_ms: float) -> None:
    assert inter_frame_gap_s(baud) * 1000 == pytest.approx(gap_ms, abs=0.01)


async def test_a_write_goes_before_every_queued_poll() -> None:
    line, rec = Line(), Recorder()
    scheduler = rec.scheduler(line, [_poll("a", 1, [0, 10, 20], 0.0),
                                     _poll("b", 2, [0, 10, 20], 0.0)])
    task = asyncio.create_task(scheduler.run())
    async with asyncio.timeout(20):
        while len(line.ops) < 5:
            await asyncio.sleep(0)
        asked_at = len(line.ops)
        polling = line.ops[-1][1]
        await scheduler.write(2, 100, [1])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    written = line.ops.index(("write", 2, 100))
    # Only the rest of the poll already on the wire went before the write.
    assert all(unit == polling for _, unit, _ in line.ops[asked_at:written])
    assert written - asked_at <= 2


async def test_a_silent_unit_backs_off_while_the_others_keep_polling() -> None:
    line, rec = Line(silent=[7]), Recorder()
    scheduler = rec.scheduler(line, [_poll("live", 1, [0]), _poll("dead", 7, [0, 10])])
    await _run_until(scheduler, lambda: scheduler.completed["live"] >= 60)
    dead_tries = sum(1 for _, unit, _ in line.ops if unit == 7)
    assert dead_tries <= 8  # 0.01 s x 2**n: a handful in the time the live unit got 60
    assert ("dead", UnitState.DOWN) in rec.states
    assert ("dead", UnitState.UP) not in rec.states
    assert scheduler.unit_state("live") is UnitState.UP
    # A silent unit is not asked for its other blocks in the same poll.
    assert ("read", 7, 10) not in line.ops


async def test_a_line_where_nothing_answers_is_lost() -> None:
    line, rec = Line(silent=[1, 2]), Recorder()
    scheduler = rec.scheduler(line, [_poll("a", 1, [0], 0.001), _poll("b", 2, [0], 0.001)])
    with pytest.raises(Unreachable, match="no unit answered 3 polls"):
        async with asyncio.timeout(20):
            await scheduler.run()


async def test_firmware_variants_are_probed_once() -> None:
    line, rec = Line(illegal=[0x101E]), Recorder()
    poll = UnitPoll("chint", 1, [[_block(0x101E, "kwh")], [_block(0x401E, "kwh")]], 0.01)
    scheduler = rec.scheduler(line, [poll])
    await _run_until(scheduler, lambda: len(rec.values) >= 3)
    assert [op for op in line.ops if op[2] == 0x101E] == [("read", 1, 0x101E)]
    assert rec.values[0] == ("chint", {"kwh": 0x401E})
    assert not rec.faults


async def test_an_illegal_address_without_variants_is_a_fault_and_the_rest_is_read() -> None:
    line, rec = Line(illegal=[10]), Recorder()
    scheduler = rec.scheduler(line, [_poll("a", 1, [0, 10, 20])])
    await _run_until(scheduler, lambda: len(rec.values) >= 2)
    assert rec.values[0] == ("a", {"r0": 0, "r20": 20})
    assert rec.faults[0] == ("a", "exception_code")


def test_units_start_staggered_over_their_interval() -> None:
    rec = Recorder()
    scheduler = rec.scheduler(Line(), [_poll(k, i + 1, [0], 1.0) for i, k in enumerate("abcd")])
    dues = [u.due for u in scheduler._units]
    assert [round(b - a, 6) for a, b in itertools.pairwise(dues)] == [0.25] * 3
