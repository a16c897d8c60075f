"""Commands to a Modbus relay output through the core's command path: the site file's
allow-list and the value check (the guard), an audit row before and after, the write
ahead of the line's polls, and the relay read back; against a real pymodbus server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import MeterBinding, ModbusDriver
from drivers.modbus.profile import load_profile
from gateway.clock import SystemClock
from gateway.commands import Command, Commander, CommandGuard, CommandStatus, policy_of
from gateway.errors import Unreachable
from gateway.store import Store
from simulators.modbus_meters import MeterServer, SimulatedMeter, meter
from tests.harness import plant_room_site, running_gateway
from tests.test_modbus_driver import Link, Sink

PROFILES = Path(__file__).resolve().parent.parent / "config" / "profiles"


def _relay_module(port: int) -> ModbusDevice:
    return ModbusDevice.model_validate({
        "driver": "modbus", "id": "io-plant", "kind": "io_module", "zone": "main-plant-room",
        "address": f"tcp://127.0.0.1:{port}/5", "profile": "relay-io", "poll_s": 0.2,
        "timeout_s": 0.3,
        "commands": {"allow": [{"action": "relay_1", "values": [0, 1]},
                               {"action": "relay_2", "values": [0, 1]},
                               # A mistake in a site file: an input cannot be written.
                               {"action": "input_1", "values": [0, 1]}],
                     "rate": {"per_minute": 60, "burst": 10}}})


@contextlib.asynccontextmanager
async def _commander(tmp_path: Path, relay: SimulatedMeter
                     ) -> AsyncIterator[tuple[Commander, Sink, Store]]:
    async with MeterServer([relay]) as server:
        device = _relay_module(server.port)
        sink = Sink()
        driver = ModbusDriver("modbus:io", [MeterBinding(
            device, load_profile(PROFILES / "relay-io.yaml"))], sink)
        store = Store(tmp_path / "gateway.db")
        store.open(asyncio.get_running_loop())
        assert device.commands is not None
        commander = Commander(CommandGuard([policy_of(device.id, device.commands)]), store,
                              SystemClock(), timeout_s=3.0)
        commander.attach(device.id, driver)
        task = asyncio.create_task(driver.run(Link()))
        try:
            async with asyncio.timeout(10):
                while sink.last("io-plant", "relay_1") is None:
                    await asyncio.sleep(0.02)
            yield commander, sink, store
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Unreachable):
                await task
            await store.close()


def _audit(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return [(a, t, json_stage) for a, t, json_stage in conn.execute(
            "SELECT action, target, json_extract(detail, '$.stage') FROM audit ORDER BY id")]


async def test_a_relay_is_switched_read_back_and_audited(tmp_path: Path) -> None:
    relay = meter("relay-io", 5)
    async with _commander(tmp_path, relay) as (commander, sink, store):
        assert sink.last("io-plant", "relay_1") == 0.0
        result = await commander.execute(Command("io-plant", "relay_1", 1, who="facilities",
                                                 why="AC circulating pump 2 on standby"))
        assert (result.status, result.read_back) == (CommandStatus.VERIFIED, 1.0)
        # The line's next poll sees the relay closed too.
        seen = len(sink.readings)
        async with asyncio.timeout(10):
            while not any(r.metric == "relay_1" and r.value == 1.0
                          for r in sink.readings[seen:]):
                await asyncio.sleep(0.02)
        off = await commander.execute(Command("io-plant", "relay_1", 0, who="facilities",
                                              why="pump 2 back"))
        assert (off.status, off.read_back) == (CommandStatus.VERIFIED, 0.0)
        # Coil writes (FC05) only: no register was written.
        assert {f for f in relay.requests if f in (5, 6, 15, 16)} == {5}
        db = store.path
    assert _audit(db) == [("command.relay_1", "io-plant", "requested"),
                          ("command.relay_1", "io-plant", "result")] * 2


@pytest.mark.parametrize(("action", "value", "status", "detail"), [
    ("relay_1", 2, CommandStatus.REFUSED, "value 2 is not one of 0, 1"),  # the guard
    ("relay_3", 1, CommandStatus.REFUSED, "relay_3 is not allowed"),  # not allow-listed
    ("input_1", 1, CommandStatus.FAILED, "input_1 is read-only"),  # the driver refuses
])
async def test_what_may_not_be_written_is_not(tmp_path: Path, action: str, value: int,
                                              status: CommandStatus, detail: str) -> None:
    relay = meter("relay-io", 5)
    async with _commander(tmp_path, relay) as (commander, _sink, _store):
        result = await commander.execute(Command("io-plant", action, value, who="facilities",
                                                 why="test"))
        assert result.status is status
        assert detail in result.detail
        assert relay.requests[5] == 0 and relay.requests[15] == 0


async def test_a_module_that_refuses_the_write_is_a_failed_command(tmp_path: Path) -> None:
    relay = meter("relay-io", 5)
    async with _commander(tmp_path, relay) as (commander, sink, store):
        relay.faults.exception = 4  # server device failure
        result = await commander.execute(Command("io-plant", "relay_2", 1, who="facilities",
                                                 why="test"))
        relay.faults.exception = None
        assert result.status is CommandStatus.FAILED
        assert "exception code 4" in result.detail
        # The line goes on polling after the failed write.
        seen = len(sink.readings)
        async with asyncio.timeout(10):
            while len(sink.readings) == seen:
                await asyncio.sleep(0.02)
        db = store.path
    assert [stage for _, _, stage in _audit(db)] == ["requested", "result"]


def _site(folder: Path, port: int) -> Path:
    path = plant_room_site(folder, f"""\
  - {{driver: modbus, id: io-main-plant, kind: io_module, zone: main-plant-room,
     address: "tcp://127.0.0.1:{port}/12", profile: relay-io, poll_s: 0.5,
     commands: {{allow: [{{action: relay_2, values: [0, 1]}}]}}}}
""")
    return path


def _post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_the_desk_api_switches_the_plant_room_relay(tmp_path: Path) -> None:
    relay = meter("relay-io", 12)
    async with (MeterServer([relay]) as server,
                running_gateway(_site(tmp_path, server.port)) as gateway):
        url = f"http://127.0.0.1:{gateway.http_port}/api/devices/io-main-plant/commands"
        status, body = await asyncio.to_thread(_post, url, {
            "action": "relay_2", "value": 1, "reason": "irrigation off: leak check",
            "operator": "facilities"})
        assert (status, body["status"], body["read_back"]) == (200, "verified", 1.0)
        status, body = await asyncio.to_thread(_post, url, {
            "action": "relay_1", "value": 1, "reason": "x", "operator": "facilities"})
        assert (status, body["status"]) == (403, "refused")
        db = gateway.db_path
    assert [stage for _, _, stage in _audit(db)] == ["requested", "result", "refused"]


SETPOINT_PROFILE = """\
profile: ahu-setpoint
description: an air handler's supply temperature set-point (a holding register)
registers:
  - {metric: supply_setpoint_c, function: 3, address: 0x0010, type: int16, scale: 0.1, unit: C}
  - {metric: supply_temperature_c, function: 4, address: 0x0000, type: int16, scale: 0.1, unit: C}
"""


@pytest.mark.parametrize(("ignores", "status"), [(False, CommandStatus.VERIFIED),
                                                 (True, CommandStatus.FAILED)])
async def test_a_set_point_is_written_and_a_write_that_did_not_take_fails(
    tmp_path: Path, ignores: bool, status: CommandStatus,
) -> None:
    """A holding register (FC06) read back after the write: a unit that answers OK and
    keeps its old value has not done it."""
    (tmp_path / "ahu-setpoint.yaml").write_text(SETPOINT_PROFILE)
    profile = load_profile(tmp_path / "ahu-setpoint.yaml")
    ahu = SimulatedMeter(7, profile)
    ahu.values["supply_setpoint_c"] = 16.0
    ahu.faults.ignore_writes = ignores
    async with MeterServer([ahu]) as server:
        device = ModbusDevice.model_validate({
            "driver": "modbus", "id": "ahu-1", "kind": "io_module", "zone": "z",
            "address": f"tcp://127.0.0.1:{server.port}/7", "profile": "ahu-setpoint",
            "poll_s": 0.2, "commands": {"allow": [
                {"action": "supply_setpoint_c", "min": 12, "max": 20}]}})
        sink = Sink()
        driver = ModbusDriver("modbus:ahu", [MeterBinding(device, profile)], sink)
        task = asyncio.create_task(driver.run(Link()))
        try:
            async with asyncio.timeout(10):
                while sink.last("ahu-1", "supply_setpoint_c") is None:
                    await asyncio.sleep(0.02)
            result = await driver.execute(Command("ahu-1", "supply_setpoint_c", 18.5,
                                                  who="facilities", why="summer setting"))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Unreachable):
                await task
    assert result.status is status
    if ignores:
        assert (result.read_back, result.detail) == (16.0, "read back 16, not 18.5")
    else:
        assert result.read_back == pytest.approx(18.5)
        assert ahu.values["supply_setpoint_c"] == pytest.approx(18.5)
        assert ahu.requests[6] >= 1 and ahu.requests[16] == 0  # one register: FC06
