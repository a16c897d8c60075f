"""The decision seam for push drivers: a driver submits an event and awaits its commit
and the rules' decision (`Sink.decide`), through the real bus, pipeline and store on
disk. No decision in time, or a failed commit, is a deny."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gateway.alerts import Alert, AlertBook, AlertSignal
from gateway.bus import Bus
from gateway.clock import ManualClock
from gateway.commands import Command, Decision
from gateway.events import Event, Heartbeat, Reading
from gateway.ingest import Ingest
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.rules import RuleRegistry, Verdict
from gateway.store import Store

T0 = 1_764_000_000.0
CAMERA = "lpr-north-in"
GATE = "gate-north-1"


class Plates:
    """A test rule module: a known plate at the north camera opens the north barrier."""

    name = "vehicles"

    def __init__(self, known: set[str]) -> None:
        self.known = known

    def restore(self, firing: Sequence[Alert]) -> None:
        return None

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        if isinstance(item, Event) and item.kind == "vehicle.plate":
            plate = item.data["plate"]
            if plate in self.known:
                return [Command(GATE, "open", who="rule:vehicles", why=f"plate {plate} known")]
        return []

    def tick(self, now: float) -> Sequence[AlertSignal]:
        return []


class Core:
    def __init__(self, store: Store) -> None:
        self.clock = ManualClock(T0)
        self.bus = Bus()
        self.ingest = Ingest(self.bus, Metrics())
        self.linkage: list[Command] = []
        self.pipeline = Pipeline(
            bus=self.bus, store=store, book=AlertBook(),
            rules=RuleRegistry([Plates({"粤B12345"})]), metrics=Metrics(), clock=self.clock,
            routes=[], on_committed=lambda: None, on_command=self.linkage.append,
            decisions=self.ingest.decisions,
        )

    def plate(self, plate: str, seq: int) -> Event:
        return Event("vehicle.plate", CAMERA, seq=seq, time=T0 + seq, data={"plate": plate})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "gateway.db", clock=ManualClock(T0))
    s.open(asyncio.get_running_loop())
    yield s
    await s.close()


@pytest.fixture
async def core(store: Store) -> AsyncIterator[Core]:
    c = Core(store)
    task = asyncio.get_running_loop().create_task(c.pipeline.run(), name="pipeline")
    yield c
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def stored(path: Path) -> tuple[list[str], list[tuple[str, str, str, dict[str, object]]]]:
    with sqlite3.connect(path) as conn:
        events = [i for (i,) in conn.execute("SELECT id FROM events ORDER BY seq")]
        audit = [(a, b, c, json.loads(d)) for a, b, c, d in conn.execute(
            "SELECT actor, action, target, detail FROM audit ORDER BY id")]
    return events, audit


async def test_a_known_plate_is_committed_then_opens_the_barrier(
    core: Core, tmp_path: Path
) -> None:
    event = core.plate("粤B12345", 1)
    decision = await core.ingest.decide(event, timeout_s=5.0)
    assert decision.allow
    assert decision.asks("open", GATE)
    assert decision.commands == (
        Command(GATE, "open", who="rule:vehicles", why="plate 粤B12345 known"),
    )
    events, audit = stored(tmp_path / "gateway.db")
    assert events == [event.id]  # committed before the answer
    assert audit == [("rule:vehicles", "decision.open", GATE,
                      {"why": "plate 粤B12345 known", "value": None, "event": event.id,
                       "source": CAMERA})]
    assert core.linkage == []  # the driver's answer opens it, not a second command
    assert len(core.ingest.decisions) == 0


async def test_an_unknown_plate_is_committed_and_denied(core: Core, tmp_path: Path) -> None:
    event = core.plate("京A00000", 1)
    decision = await core.ingest.decide(event, timeout_s=5.0)
    assert decision == Decision((), "the rules asked for nothing")
    assert not decision.allow
    assert stored(tmp_path / "gateway.db") == ([event.id], [])


async def test_the_same_rule_on_an_event_nobody_awaits_is_linkage(
    core: Core, tmp_path: Path
) -> None:
    await core.ingest.event(core.plate("粤B12345", 1))
    await core.ingest.settle()
    assert [c.action for c in core.linkage] == ["open"]
    assert stored(tmp_path / "gateway.db")[1] == []  # the commander audits linkage


async def test_no_decision_in_time_is_a_deny(store: Store, tmp_path: Path) -> None:
    c = Core(store)  # no pipeline runs: the event waits on the bus
    decision = await c.ingest.decide(c.plate("粤B12345", 1), timeout_s=0.05)
    assert decision == Decision((), "no decision in 0.05 s")
    assert c.ingest.decisions_timed_out == 1
    assert len(c.ingest.decisions) == 0
    # Handled later, the event is stored; nobody waits for its decision any more.
    done = c.ingest.settle()
    c.pipeline.process(await c.bus.get_batch())
    async with asyncio.timeout(5):
        await done
    assert len(stored(tmp_path / "gateway.db")[0]) == 1


async def test_a_failed_commit_is_a_deny(core: Core, store: Store, tmp_path: Path) -> None:
    def disk_full() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    store.inject_fault(disk_full)
    decision = await core.ingest.decide(core.plate("粤B12345", 1), timeout_s=5.0)
    assert not decision.allow
    assert decision.reason.startswith("not committed")
    assert "disk is full" in decision.reason
    store.inject_fault(None)
    await store.reset()
    assert stored(tmp_path / "gateway.db") == ([], [])
