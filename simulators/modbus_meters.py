"""Simulated Modbus meters: real pymodbus servers (Modbus TCP, or RTU framing on TCP as a
serial server speaks it) whose registers come from the same profile files the driver
reads, with faults injectable per unit: a dead unit, a slow unit, exception codes,
absurd or NaN values, a counter reset.

    python -m simulators.modbus_meters --port 5020 eastron-sdm630:1 chint-dtsu666:2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.modbus.blocks import decode, encode
from drivers.modbus.profile import Profile, Register, load_profile

PROFILES = Path(__file__).resolve().parent.parent / "config" / "profiles"

# What a healthy meter reads before anyone changes it (per metric name prefix).
_TYPICAL: dict[str, float] = {
    "voltage_": 230.0, "current_": 12.0, "power_w": 8200.0, "power_factor": 0.95,
    "frequency_hz": 50.0, "energy_": 1000.0, "flow_m3h": 3.0, "water_total_m3": 5000.0,
    "status": 0.0, "gas_flow_nm3h": 20.0, "gas_total_nm3": 40_000.0,
    "gas_temperature_c": 15.0, "gas_pressure_kpa": 3.2,
}
_TABLE = {1: 0, 2: 1, 3: 2, 4: 3}  # function -> SimDevice's (coils, di, hr, ir) position


def typical(metric: str) -> float:
    for prefix, value in _TYPICAL.items():
        if metric.startswith(prefix):
            return value
    return 0.0


@dataclass
class Faults:
    dead: bool = False  # answers nothing
    slow_s: float = 0.0  # answers this late
    exception: int | None = None  # answers every request with this exception code
    absurd: bool = False  # NaN floats, 999 V, PF 3
    # Garbage on the wire (Modbus TCP only): an answer one register short, or an answer
    # carrying another function code than the request's.
    short_answer: bool = False
    wrong_function: bool = False
    # Acknowledges register writes (FC06/16) and keeps its old values: "OK" is no proof.
    ignore_writes: bool = False
    # Refuses ("illegal address") a read that touches an address its map leaves empty:
    # firmware that will not be read across the holes of its map (no gap bridge).
    strict_map: bool = False


@dataclass
class SimulatedMeter:
    """One unit: its current values (by metric), faults, and what it was asked."""

    unit: int
    profile: Profile
    # "primary" or "alternate": where registers with two addresses sit on this firmware.
    variant: str = "primary"
    values: dict[str, float] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: Counter[int] = field(default_factory=Counter)  # by function code

    def __post_init__(self) -> None:
        for reg in self.profile.registers:
            self.values.setdefault(reg.metric, typical(reg.metric))

    def address_of(self, reg: Register) -> int:
        if self.variant == "alternate" and reg.alternate_address is not None:
            return reg.alternate_address
        return reg.address

    def _absent(self, reg: Register) -> int | None:
        if reg.alternate_address is None:
            return None
        return reg.address if self.variant == "alternate" else reg.alternate_address

    def advance(self, seconds: float) -> None:
        """Counters grow with the load: energy by power, water and gas by flow."""
        hours = seconds / 3600.0
        power_kw = self.values.get("power_w", 0.0) / 1000.0
        for reg in self.profile.registers:
            if reg.kind != "counter":
                continue
            if reg.unit == "kWh" and "import" in reg.metric:
                self.values[reg.metric] += max(0.0, power_kw) * hours
            elif reg.metric == "water_total_m3":
                self.values[reg.metric] += max(0.0, self.values.get("flow_m3h", 0.0)) * hours
            elif reg.metric == "gas_total_nm3":
                self.values[reg.metric] += self.values.get("gas_flow_nm3h", 0.0) * hours

    def reset_counters(self) -> None:
        for reg in self.profile.registers:
            if reg.kind == "counter":
                self.values[reg.metric] = 0.0

    def _shown(self, reg: Register) -> float:
        value = self.values[reg.metric]
        if not self.faults.absurd:
            return value
        if reg.type in ("float32", "float64"):
            return math.nan
        return 999.0 if reg.metric.startswith("voltage_") else value * 50 + 50

    def device(self) -> SimDevice:
        tables: list[list[SimData]] = [[], [], [], []]
        size = dict.fromkeys(_TABLE, 1)
        for reg in self.profile.registers:
            for address in (reg.address, reg.alternate_address):
                if address is not None:
                    size[reg.function] = max(size[reg.function], address + reg.width)
        for function, position in _TABLE.items():
            kind = DataType.BITS if function in (1, 2) else DataType.REGISTERS
            values: bool | int = False if function in (1, 2) else 0
            tables[position].append(SimData(0, count=size[function], values=values,
                                            datatype=kind))
        return SimDevice(self.unit, simdata=(tables[0], tables[1], tables[2], tables[3]),
                         action=self._action)

    def _mapped(self, function: int, address: int, count: int) -> bool:
        covered: set[int] = set()
        for reg in self.profile.registers:
            if reg.function == function:
                at = self.address_of(reg)
                covered.update(range(at, at + reg.width))
        return all(a in covered for a in range(address, address + count))

    async def _action(self, function: int, start: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None,
                      ) -> ExcCodes | None:
        self.requests[function] += 1
        if self.faults.slow_s:
            await asyncio.sleep(self.faults.slow_s)
        if self.faults.exception is not None:
            return ExcCodes(self.faults.exception)
        read = {3: 3, 4: 4, 6: 3, 16: 3}.get(function, function)
        if self.faults.strict_map and set_values is None and not self._mapped(read, address,
                                                                              count):
            return ExcCodes.ILLEGAL_ADDRESS
        for reg in self.profile.registers:
            if reg.function != read:
                continue
            absent = self._absent(reg)
            if absent is not None and address < absent + reg.width and absent < address + count:
                return ExcCodes.ILLEGAL_ADDRESS
            if set_values is None and reg.function in (3, 4):
                at = self.address_of(reg) - start
                words = encode(reg, self._shown(reg), self.profile.word_order_of(reg))
                registers[at:at + len(words)] = words
            elif set_values is not None and function in (6, 16) and not self.faults.ignore_writes:
                # A written holding register holds the new value from now on.
                at = self.address_of(reg) - address
                if at >= 0 and at + reg.width <= len(set_values):
                    written = [int(w) for w in set_values[at:at + reg.width]]
                    self.values[reg.metric] = decode(reg, written, self.profile.word_order_of(reg))
        return None


class MeterServer:
    """A pymodbus server on loopback carrying several units (one TCP peer or one serial
    server's RS-485 line). Port 0 picks a free port; `port` tells which."""

    def __init__(self, meters: Sequence[SimulatedMeter], *, rtu: bool = False,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.meters = {m.unit: m for m in meters}
        self.rtu = rtu
        self._host, self._port = host, port
        self._server: ModbusTcpServer | None = None

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # A dead unit's answer never leaves: the request is heard, nothing comes back.
        if sending and data:
            unit = data[0] if self.rtu else (data[6] if len(data) > 6 else 0)
            meter = self.meters.get(unit)
            if meter is not None and meter.faults.dead:
                return b""
            if meter is not None and not self.rtu and len(data) > 10 and data[7] in (3, 4):
                return self._garble(meter.faults, data)
        return data

    @staticmethod
    def _garble(faults: Faults, frame: bytes) -> bytes:
        # MBAP: tid(2) pid(2) length(2) unit(1); PDU: function(1) byte count(1) data.
        out = bytearray(frame)
        if faults.short_answer and out[8] >= 4:
            del out[-2:]
            out[8] -= 2
            out[4:6] = (int.from_bytes(out[4:6], "big") - 2).to_bytes(2, "big")
        if faults.wrong_function:
            out[7] = 7 - out[7]  # 3 <-> 4
        return bytes(out)

    @property
    def port(self) -> int:
        if self._server is None or self._server.transport is None:
            raise RuntimeError("the meter server is not started")
        sockets = self._server.transport.sockets  # type: ignore[attr-defined]
        return int(sockets[0].getsockname()[1])

    @property
    def requests(self) -> int:
        return sum(sum(m.requests.values()) for m in self.meters.values())

    async def start(self) -> MeterServer:
        self._server = ModbusTcpServer(
            [m.device() for m in self.meters.values()],
            framer=FramerType.RTU if self.rtu else FramerType.SOCKET,
            address=(self._host, self._port),
            trace_packet=self._trace,
        )
        await self._server.serve_forever(background=True)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def __aenter__(self) -> MeterServer:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


def meter(profile: str, unit: int, **kwargs: object) -> SimulatedMeter:
    return SimulatedMeter(unit, load_profile(PROFILES / f"{profile}.yaml"), **kwargs)  # type: ignore[arg-type]


_FLEET_PROFILES = ("eastron-sdm630", "chint-dtsu666", "acrel-adw300", "water-meter",
                   "gas-meter")


async def _serve_fleet(specs: Sequence[str], host: str) -> None:
    """`N:U[:rtu]` per spec: N endpoints of U units each (profiles in turn). Prints one JSON
    line of {"tcp": [ports], "rtu": [ports]} once every server listens."""
    servers: list[MeterServer] = []
    ports: dict[str, list[int]] = {"tcp": [], "rtu": []}
    meters: list[SimulatedMeter] = []
    for spec in specs:
        count, units, *rest = spec.split(":")
        rtu = rest == ["rtu"]
        for _ in range(int(count)):
            group = [meter(_FLEET_PROFILES[u % len(_FLEET_PROFILES)], u + 1,
                           variant="alternate") for u in range(int(units))]
            meters += group
            server = await MeterServer(group, rtu=rtu, host=host).start()
            servers.append(server)
            ports["rtu" if rtu else "tcp"].append(server.port)
    print(json.dumps(ports), flush=True)
    try:
        while True:
            await asyncio.sleep(1.0)
            for m in meters:
                m.advance(1.0)
    finally:
        for server in servers:
            await server.stop()


async def _serve(args: argparse.Namespace) -> None:
    if args.fleet:
        await _serve_fleet(args.fleet, args.host)
        return
    meters = []
    for spec in args.meters:
        name, _, unit = spec.partition(":")
        meters.append(meter(name, int(unit or "1")))
    async with MeterServer(meters, rtu=args.rtu, host=args.host, port=args.port) as server:
        print(f"modbus meters on {args.host}:{server.port} rtu={args.rtu}", flush=True)
        while True:
            await asyncio.sleep(1.0)
            for m in meters:
                m.advance(1.0)


def main(argv: Sequence[str] | None = None) -> None:
    # pymodbus logs every dropped client at ERROR; a simulator under load would flood.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    parser.add_argument("--rtu", action="store_true", help="RTU framing on TCP")
    parser.add_argument("--fleet", action="append", metavar="N:UNITS[:rtu]",
                        help="N endpoints of UNITS units each on free ports")
    parser.add_argument("meters", nargs="*", help="profile:unit")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
