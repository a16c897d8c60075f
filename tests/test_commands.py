"""Commands: the guard from tables (allow-list, value range or set, reason, per-device
token bucket on injected time), the site file's `commands:`, the commander with the real
store on disk (audit rows, read-back, failures), rule linkage through the real pipeline
after the commit, and the HTTP endpoint."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from gateway.alerts import Alert, AlertBook, AlertSignal
from gateway.api import make_app
from gateway.bus import Bus
from gateway.clock import ManualClock
from gateway.commands import (
    Allowed,
    Command,
    Commander,
    CommandGuard,
    CommandResult,
    CommandStatus,
    DevicePolicy,
    Rate,
    TokenBucket,
    policy_of,
)
from gateway.config import DeviceCommands
from gateway.contract import Commandable
from gateway.events import Event, Heartbeat, Reading
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.rules import RuleRegistry, Verdict
from gateway.store import Store
from tests.test_api import served

T0 = 1_764_000_000.0
GATE = "gate-north-1"
AHU = "ahu-b1-01"

POLICIES = [
    DevicePolicy(GATE, {"open": Allowed("open"), "close": Allowed("close")}, Rate(6.0, 2)),
    DevicePolicy(AHU, {
        "setpoint": Allowed("setpoint", 16.0, 28.0),
        "mode": Allowed("mode", values=frozenset({"auto", "manual"})),
    }),
]


def cmd(device: str, action: str, value: Any = None, why: str = "test") -> Command:
    return Command(device, action, value, who="desk-1", why=why)


@pytest.mark.parametrize(
    ("command", "refusal"),
    [
        (cmd(GATE, "open"), None),
        (cmd(GATE, "open", 1), "open takes no value"),
        (cmd(GATE, "unlock"), "unlock is not allowed on gate-north-1"),
        (cmd("gate-south-9", "open"), "device gate-south-9 takes no commands"),
        (cmd(GATE, "open", why="  "), "a command needs a reason"),
        (cmd(AHU, "setpoint", 21.5), None),
        (cmd(AHU, "setpoint", 16), None),
        (cmd(AHU, "setpoint", 28.0), None),
        (cmd(AHU, "setpoint", 15.9), "value 15.9 is below 16"),
        (cmd(AHU, "setpoint", 30), "value 30 is above 28"),
        (cmd(AHU, "setpoint", "21"), "value '21' is not a number"),
        (cmd(AHU, "setpoint", True), "value True is not a number"),
        (cmd(AHU, "setpoint"), "value None is not a number"),
        (cmd(AHU, "mode", "auto"), None),
        (cmd(AHU, "mode", "off"), "value 'off' is not one of 'auto', 'manual'"),
    ],
)
def test_guard_allow_list_and_values(command: Command, refusal: str | None) -> None:
    assert CommandGuard(POLICIES).check(command, 0.0) == refusal


@pytest.mark.parametrize(
    ("rate", "takes", "expected"),
    [
        # burst 2, 6 a minute (one token per 10 s)
        (Rate(6.0, 2), [0, 0, 0], [True, True, False]),
        (Rate(6.0, 2), [0, 0, 9.9], [True, True, False]),
        (Rate(6.0, 2), [0, 0, 10], [True, True, True]),
        (Rate(6.0, 2), [0, 0, 10, 10], [True, True, True, False]),
        # a long quiet spell refills only up to the burst
        (Rate(6.0, 2), [0, 0, 1000, 1000, 1000], [True, True, True, True, False]),
        (Rate(60.0, 1), [0, 0.5, 1.0, 1.5, 2.0], [True, False, True, False, True]),
        # a clock that steps back refills nothing
        (Rate(6.0, 1), [100, 50, 59], [True, False, False]),
    ],
)
def test_token_bucket(rate: Rate, takes: list[float], expected: list[bool]) -> None:
    bucket = TokenBucket(rate)
    assert [bucket.take(t) for t in takes] == expected


def test_rate_limit_is_per_device_and_refusals_spend_no_token() -> None:
    guard = CommandGuard(POLICIES)
    assert guard.check(cmd(GATE, "open", 5), 0.0) == "open takes no value"
    assert guard.check(cmd(GATE, "open"), 0.0) is None
    assert guard.check(cmd(GATE, "close"), 0.0) is None
    assert guard.check(cmd(GATE, "open"), 0.0) == (
        "rate limit: gate-north-1 takes 6 commands a minute, 2 at once"
    )
    assert guard.check(cmd(AHU, "mode", "auto"), 0.0) is None  # another device's bucket


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"allow": []}, "at least 1 item"),
        ({"allow": [{"action": "setpoint", "min": 1, "values": [1]}]}, "not both"),
        ({"allow": [{"action": "setpoint", "min": 30, "max": 20}]}, "min 30 is above max 20"),
        ({"allow": [{"action": "open"}, {"action": "open"}]}, "open listed twice"),
        ({"allow": [{"action": "Open Now"}]}, "should match pattern"),
        ({"allow": [{"action": "open"}], "rate": {"per_minute": 0}}, "greater than 0"),
        ({"allow": [{"action": "open", "colour": "red"}]}, "Extra inputs"),
    ],
)
def test_bad_commands_in_the_site_file_are_refused(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeviceCommands.model_validate(doc)


def test_site_file_commands_become_the_guard_s_policy() -> None:
    doc = {
        "allow": [{"action": "open"}, {"action": "setpoint", "min": 16, "max": 28},
                  {"action": "mode", "values": ["auto", "manual"]}],
        "rate": {"per_minute": 2, "burst": 1},
    }
    policy = policy_of(AHU, DeviceCommands.model_validate(doc))
    guard = CommandGuard([policy])
    assert policy.rate == Rate(2.0, 1)
    assert guard.check(cmd(AHU, "setpoint", 40), 0.0) == "value 40 is above 28"
    assert guard.check(cmd(AHU, "mode", "manual"), 0.0) is None
    assert guard.check(cmd(AHU, "open"), 1.0) is not None  # one a burst, 2 a minute


class FakeBarrier:
    """A driver that takes commands (the protocol, not a protocol layer): it records
    what it is told and answers as a barrier controller would."""

    def __init__(self, answer: CommandResult | None = None, *, hang: bool = False,
                 error: Exception | None = None) -> None:
        self.told: list[Command] = []
        self.answer = answer or CommandResult(CommandStatus.VERIFIED, "barrier up", "open")
        self.hang = hang
        self.error = error

    async def execute(self, command: Command) -> CommandResult:
        self.told.append(command)
        if self.hang:
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error
        return self.answer


def audit_rows(path: Path) -> list[tuple[str, str, str, dict[str, Any]]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT actor, action, target, detail FROM audit ORDER BY id"
        ).fetchall()
    return [(a, b, c, json.loads(d)) for a, b, c, d in rows]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "gateway.db", clock=ManualClock(T0))
    s.open(asyncio.get_running_loop())
    yield s
    await s.close()


def commander(store: Store, driver: Commandable | None = None, **kw: float) -> Commander:
    c = Commander(CommandGuard(POLICIES), store, ManualClock(T0), **kw)
    if driver is not None:
        c.attach(GATE, driver)
    return c


async def test_a_command_is_audited_before_and_after_and_read_back(
    store: Store, tmp_path: Path
) -> None:
    barrier = FakeBarrier()
    result = await commander(store, barrier).execute(cmd(GATE, "open", why="ambulance"))
    assert result == CommandResult(CommandStatus.VERIFIED, "barrier up", "open")
    assert barrier.told == [cmd(GATE, "open", why="ambulance")]
    assert audit_rows(tmp_path / "gateway.db") == [
        ("desk-1", "command.open", GATE, {"stage": "requested", "value": None, "why": "ambulance"}),
        ("desk-1", "command.open", GATE, {"stage": "result", "value": None, "why": "ambulance",
                                          "status": "verified", "detail": "barrier up",
                                          "read_back": "open"}),
    ]


@pytest.mark.parametrize(
    ("driver", "command", "status", "detail"),
    [
        (FakeBarrier(), cmd(GATE, "lift"), "refused", "lift is not allowed on gate-north-1"),
        (None, cmd(GATE, "open"), "refused", "no running driver takes commands for gate-north-1"),
        (FakeBarrier(CommandResult(CommandStatus.UNVERIFIED, "accepted")), cmd(GATE, "open"),
         "unverified", "accepted"),
        (FakeBarrier(error=ConnectionResetError("peer gone")), cmd(GATE, "open"), "failed",
         "ConnectionResetError('peer gone')"),
        (FakeBarrier(hang=True), cmd(GATE, "open"), "failed", "no answer in 0.05 s"),
    ],
)
async def test_command_results_each_leave_their_audit_row(
    store: Store, tmp_path: Path, driver: FakeBarrier | None, command: Command, status: str,
    detail: str,
) -> None:
    result = await commander(store, driver, timeout_s=0.05).execute(command)
    assert (result.status.value, result.detail) == (status, detail)
    rows = audit_rows(tmp_path / "gateway.db")
    last = rows[-1][3]
    assert (last["status"], last["detail"]) == (status, detail)
    if status == "refused":
        assert [r[3]["stage"] for r in rows] == ["refused"]
        assert driver is None or driver.told == []
    else:
        assert [r[3]["stage"] for r in rows] == ["requested", "result"]


async def test_no_command_is_sent_unaudited(store: Store, tmp_path: Path) -> None:
    barrier = FakeBarrier()

    def disk_full() -> None:
        raise sqlite3.OperationalError("database or disk is full")

    store.inject_fault(disk_full)
    result = await commander(store, barrier).execute(cmd(GATE, "open"))
    store.inject_fault(None)
    assert result.status is CommandStatus.REFUSED
    assert result.detail.startswith("not audited")
    assert "disk is full" in result.detail
    assert barrier.told == []
    await store.reset()
    assert audit_rows(tmp_path / "gateway.db") == []


class Linkage:
    """A rule module that asks for the barrier on every fire alarm it sees."""

    name = "linkage"

    def restore(self, firing: Sequence[Alert]) -> None:
        return None

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        if isinstance(item, Event) and item.kind == "fire.detector.alarm":
            return [Command(GATE, "open", who="rule:linkage", why=f"fire at {item.source}")]
        return []

    def tick(self, now: float) -> Sequence[AlertSignal]:
        return []


async def test_a_rule_s_command_runs_only_after_its_cause_is_committed(
    store: Store, tmp_path: Path
) -> None:
    barrier = FakeBarrier()
    cmdr = commander(store, barrier)
    sent: list[Command] = []
    results: list[CommandResult] = []
    done = asyncio.Event()

    def on_command(command: Command) -> None:
        sent.append(command)

        async def run() -> None:
            results.append(await cmdr.execute(command))
            done.set()

        tasks.add(asyncio.get_running_loop().create_task(run()))

    tasks: set[asyncio.Task[None]] = set()
    pipeline = Pipeline(
        bus=Bus(), store=store, book=AlertBook(), rules=RuleRegistry([Linkage()]),
        metrics=Metrics(), clock=ManualClock(T0), routes=[], on_committed=lambda: None,
        on_command=on_command,
    )
    alarm = Event("fire.detector.alarm", "hd-b1-01", seq=1, time=T0)
    pipeline.process([alarm])
    assert sent == []  # the event's commit has not been seen yet
    async with asyncio.timeout(5):
        await done.wait()
    assert results == [barrier.answer]
    with sqlite3.connect(tmp_path / "gateway.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (1,)
    assert [r[0:3] for r in audit_rows(tmp_path / "gateway.db")] == [
        ("rule:linkage", "command.open", GATE), ("rule:linkage", "command.open", GATE),
    ]


async def test_http_command_endpoint(store: Store, tmp_path: Path) -> None:
    barrier = FakeBarrier()
    app = make_app(book=AlertBook(), metrics=Metrics(), health=lambda: {"status": "ok"},
                   commands=commander(store, barrier).execute)
    async with served(app) as (url, _), aiohttp.ClientSession() as http:
        async def post(device: str, body: Any) -> tuple[int, Any]:
            async with http.post(f"{url}/api/devices/{device}/commands", json=body) as r:
                return r.status, await r.json()

        ok = await post(GATE, {"action": "open", "reason": "delivery", "operator": "li"})
        refused = await post(GATE, {"action": "lift", "reason": "x", "operator": "li"})
        no_reason = await post(GATE, {"action": "open", "operator": "li"})
        not_object = await post(GATE, [1, 2])
    assert ok == (200, {"device": GATE, "action": "open", "status": "verified",
                        "detail": "barrier up", "read_back": "open"})
    assert refused[0] == 403
    assert refused[1]["detail"] == "lift is not allowed on gate-north-1"
    assert no_reason == (400, {"error": "reason is required (a non-empty string)"})
    assert not_object == (400, {"error": "body must be an object"})
    rows = audit_rows(tmp_path / "gateway.db")
    assert [r[3]["stage"] for r in rows] == ["requested", "result", "refused"]
    assert rows[0][0] == "li via api from 127.0.0.1"
    assert rows[0][3]["why"] == "delivery"


async def test_http_command_body_sent_in_pieces_is_read_whole(store: Store,
                                                              tmp_path: Path) -> None:
    """A command body that arrives chunked, in two segments, is one command (it was read
    with a single read before, which could take only the first segment)."""
    barrier = FakeBarrier()
    app = make_app(book=AlertBook(), metrics=Metrics(), health=lambda: {"status": "ok"},
                   commands=commander(store, barrier).execute)

    async def pieces() -> AsyncIterator[bytes]:
        yield b'{"action": "open", "reason": "del'
        await asyncio.sleep(0.05)
        yield b'ivery", "operator": "li"}'

    async with served(app) as (url, _), aiohttp.ClientSession() as http:
        async with http.post(f"{url}/api/devices/{GATE}/commands", data=pieces()) as r:
            status, body = r.status, await r.json()
        async with http.post(f"{url}/api/devices/{GATE}/commands",
                             data=b"{" + b" " * 5000 + b"}") as r:
            too_large = r.status, await r.json()
    assert (status, body["status"]) == (200, "verified")
    assert too_large == (400, {"error": "body too large"})
    assert audit_rows(tmp_path / "gateway.db")[0][3]["why"] == "delivery"
