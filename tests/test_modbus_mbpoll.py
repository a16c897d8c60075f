"""A Modbus master nobody here wrote (Debian's mbpoll) reads the simulated meters and gets
the values the driver's decoding gets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil

import pytest

from drivers.modbus.adapter import ModbusLink, Request
from drivers.modbus.blocks import decode
from drivers.modbus.config import ModbusDevice, parse_modbus_address
from drivers.modbus.driver import MeterBinding, ModbusDriver
from gateway.commands import Command, CommandStatus
from gateway.errors import Unreachable
from simulators.modbus_meters import MeterServer, meter
from tests.serial_line import serial_line
from tests.test_modbus_driver import Link, Sink

MBPOLL = shutil.which("mbpoll") or "mbpoll"  # installed by scripts/install-system-deps


async def _mbpoll(*args: str) -> list[float]:
    process = await asyncio.create_subprocess_exec(
        MBPOLL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(20):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return [float(v) for v in re.findall(r"^\[\d+\]:\s+(\S+)", out.decode(), re.MULTILINE)]


@pytest.mark.parametrize("rtu", [False, True], ids=["tcp", "rtu-on-a-serial-line"])
async def test_mbpoll_reads_what_the_driver_reads(rtu: bool) -> None:
    sdm = meter("eastron-sdm630", 1)
    sdm.values.update(voltage_l1_v=229.5, voltage_l2_v=231.25, voltage_l3_v=232.0)
    acrel = meter("acrel-adw300", 7)
    acrel.values["voltage_l1_v"] = 230.1
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(MeterServer([sdm, acrel], rtu=rtu))
        port = str(server.port)
        if rtu:
            # mbpoll speaks RTU on serial ports only: give it a real one.
            line = await stack.enter_async_context(serial_line("127.0.0.1", server.port))
            where = ["-m", "rtu", "-b", "115200", "-P", "none", line]
        else:
            where = ["-m", "tcp", "-p", port, "127.0.0.1"]
        # SDM630: FC04 float32 high word first (-B), PDU addressing from 0 (-0).
        got = await _mbpoll("-a", "1", "-t", "3:float", "-B", "-0", "-r", "0", "-c", "3", "-1",
                            *where)
        # ADW300: FC03 uint16, raw tenths of a volt.
        raw = await _mbpoll("-a", "7", "-t", "4", "-0", "-r", "20", "-c", "1", "-1", *where)
        scheme = "rtu+tcp" if rtu else "tcp"
        link = ModbusLink(parse_modbus_address(f"{scheme}://127.0.0.1:{port}/1"))
        await link.open()
        try:
            ours = await link.read(Request(4, 1, 0, 6))
            ours_acrel = await link.read(Request(3, 7, 20, 1))
        finally:
            link.close()
    reg = sdm.profile.register("voltage_l1_v")
    decoded = [decode(reg, ours[i:i + 2]) for i in (0, 2, 4)]
    assert got == pytest.approx(decoded)
    assert got == pytest.approx([229.5, 231.25, 232.0])
    assert raw == [2301.0]
    assert decode(acrel.profile.register("voltage_l1_v"), ours_acrel) == pytest.approx(
        raw[0] * 0.1)


async def test_mbpoll_sees_the_relay_the_gateway_switched() -> None:
    """The relay module's coils, read by a master nobody here wrote, after the gateway's
    driver wrote and read back relay 2."""
    relay = meter("relay-io", 5)
    async with MeterServer([relay]) as server:
        device = ModbusDevice.model_validate({
            "driver": "modbus", "id": "io", "kind": "io_module", "zone": "z",
            "address": f"tcp://127.0.0.1:{server.port}/5", "profile": "relay-io",
            "poll_s": 0.2})
        sink = Sink()
        driver = ModbusDriver("modbus:io", [MeterBinding(device, relay.profile)], sink)
        task = asyncio.create_task(driver.run(Link()))
        try:
            async with asyncio.timeout(10):
                while sink.last("io", "relay_1") is None:
                    await asyncio.sleep(0.02)
            result = await driver.execute(Command("io", "relay_2", 1, why="test"))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Unreachable):
                await task
        assert result.status is CommandStatus.VERIFIED
        # Coils (-t 0), PDU addressing from 0, relays 1-4.
        coils = await _mbpoll("-a", "5", "-t", "0", "-0", "-r", "0", "-c", "4", "-1",
                              "-m", "tcp", "-p", str(server.port), "127.0.0.1")
    assert coils == [0, 1, 0, 0]
