"""Every pymodbus call of the gateway, behind one small surface: open a link, read and
write registers, close. pymodbus' own retries and reconnects are off: a silent unit is the
scheduler's business, a lost link the supervisor's.

    ModbusFault (a DeviceError)
    +-- NoAnswer          the unit did not answer within its timeout (the link may be fine)
    +-- ExceptionAnswer   the unit answered with a Modbus exception code
    +-- BadAnswer         an answer of the wrong length or function
    Unreachable           the link itself is gone (connect refused, connection dropped)
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers.modbus.config import ModbusEndpoint
from gateway.errors import DeviceError, Unreachable

# pymodbus logs every timeout at ERROR; the scheduler counts them and logs transitions.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

# pymodbus closes a connection after this many unanswered requests in a row; one dead unit
# on a serial server would take the whole line down with it. Ours decides that, not it.
_NEVER_DISCONNECT = 1 << 30
CONNECT_TIMEOUT_S = 5.0
ILLEGAL_ADDRESS = 2


class ModbusFault(DeviceError):
    """One transaction failed; the link may still be good."""


class NoAnswer(ModbusFault):
    """The unit stayed silent."""


class ExceptionAnswer(ModbusFault):
    def __init__(self, function: int, code: int) -> None:
        super().__init__(f"function {function:02d}: exception code {code}")
        self.function = function
        self.code = code


class BadAnswer(ModbusFault):
    """The unit answered with something that is not an answer to our request."""


@dataclass(frozen=True, slots=True)
class Request:
    function: int  # 1, 2, 3, 4 (reads), 5, 6, 15, 16 (writes)
    unit: int
    address: int
    count: int

_T = TypeVar("_T")


class ModbusLink:
    """One connection to an endpoint (TCP peer, serial server or serial port)."""

    def __init__(self, endpoint: ModbusEndpoint, *, timeout_s: float = 1.0) -> None:
        self.endpoint = endpoint
        self.requests = 0
        ep = endpoint
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if ep.transport == "rtu":
            self._client = AsyncModbusSerialClient(
                ep.serial_port, framer=FramerType.RTU, baudrate=ep.baud, parity=ep.parity,
                stopbits=ep.stopbits, timeout=timeout_s, retries=0, reconnect_delay=0,
            )
        else:
            framer = FramerType.SOCKET if ep.transport == "tcp" else FramerType.RTU
            self._client = AsyncModbusTcpClient(
                ep.host, port=ep.port, framer=framer, timeout=timeout_s, retries=0,
                reconnect_delay=0,
            )
        self._client.set_max_no_responses(_NEVER_DISCONNECT)

    async def open(self) -> None:
        try:
            ok = await _cancellable(self._client.connect())
        except asyncio.CancelledError:
            self._client.close()  # a connect the cancel overtook would be left open
            raise
        except (OSError, ModbusException) as exc:
            raise Unreachable(f"{self.endpoint.link}: {exc}") from exc
        if not ok:
            raise Unreachable(f"{self.endpoint.link}: cannot connect")

    def close(self) -> None:
        self._client.close()

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def read(self, request: Request) -> list[int]:
        """Registers (FC03/04) or bits as 0/1 (FC01/02) of one read."""
        client, fc = self._client, request.function
        if fc == 3:
            reader = client.read_holding_registers
        elif fc == 4:
            reader = client.read_input_registers
        elif fc == 1:
            reader = client.read_coils
        elif fc == 2:
            reader = client.read_discrete_inputs
        else:
            raise ValueError(f"function {fc} is not a read")
        answer = await self._call(fc, lambda: reader(request.address, count=request.count,
                                                     device_id=request.unit))
        if fc in (1, 2):
            bits = list(answer.bits)
            if len(bits) < request.count:
                raise BadAnswer(f"asked {request.count} bits, got {len(bits)}")
            return [int(b) for b in bits[: request.count]]
        registers = list(answer.registers)
        if len(registers) != request.count:
            raise BadAnswer(f"asked {request.count} registers, got {len(registers)}")
        return registers

    async def write(self, unit: int, address: int, values: Sequence[int], *,
                    single: bool = False) -> None:
        """Holding registers: function 16, or 06 one by one where `single` (a workaround)."""
        client = self._client
        if len(values) == 1 or single:
            for offset, value in enumerate(values):
                at = address + offset
                await self._call(6, functools.partial(client.write_register, at, value,
                                                      device_id=unit))
            return
        await self._call(16, lambda: client.write_registers(address, list(values),
                                                            device_id=unit))

    async def write_coil(self, unit: int, address: int, value: bool) -> None:
        await self._call(5, lambda: self._client.write_coil(address, value, device_id=unit))

    async def _call(self, function: int, send: Callable[[], Awaitable[ModbusPDU]]) -> ModbusPDU:
        if not self._client.connected:
            # pymodbus would reconnect on its own here; the supervisor does that.
            raise Unreachable(f"{self.endpoint.link}: connection lost")
        self.requests += 1
        try:
            answer = await _cancellable(send())
        except ModbusIOException as exc:
            if not self._client.connected:
                raise Unreachable(f"{self.endpoint.link}: connection lost") from exc
            raise NoAnswer(str(exc)) from exc
        except ConnectionException as exc:
            raise Unreachable(f"{self.endpoint.link}: {exc}") from exc
        except ModbusException as exc:
            raise BadAnswer(str(exc)) from exc
        if answer.isError():
            raise ExceptionAnswer(function, int(answer.exception_code))
        if answer.function_code != function:
            raise BadAnswer(f"asked function {function}, answered {answer.function_code}")
        return answer


async def _cancellable(call: Awaitable[_T]) -> _T:
    """Await a pymodbus call so that a cancel always lands.

    pymodbus waits with asyncio.wait_for (connects and requests alike), which on Python
    3.11 swallows a cancel that lands as the connection is made or the answer arrives:
    the driver would then poll on after the daemon's shutdown. A cancel request is
    counted on the task (`Task.cancelling`) even when it is swallowed, so one that came
    in during the call is raised here once the call returns. No task per request."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    result = await call
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError
    return result
