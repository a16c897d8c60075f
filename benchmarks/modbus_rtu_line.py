"""An RS-485 line at a real baud rate: the driver on a serial port (a pty), the line paced
at 9600 baud 8N1 (tests/serial_line.py), the meters in another process (a serial server's
units, RTU framing).

    .venv/bin/python benchmarks/modbus_rtu_line.py [--units 8] [--baud 9600] [--seconds 20]

Every unit is polled as fast as the line allows (its interval is shorter than a cycle), so
the measured cycle is the line's: the time to poll every unit once. The plan is what the
frames take on the wire, request and answer, 10 bits a character, plus the scheduler's
inter-frame gap after each transaction:

    cycle = sum over units and blocks of ((8 + 5 + 2 x registers) x 10 / baud + gap)

Prints, per run, the measured and planned cycle, their ratio, polls/s and the driver
process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.modbus_poll import PROFILES, CountingSink, Link, simulators  # noqa: E402
from drivers.modbus.blocks import Block  # noqa: E402
from drivers.modbus.config import ModbusDevice  # noqa: E402
from drivers.modbus.driver import MeterBinding, ModbusDriver, plans_for  # noqa: E402
from drivers.modbus.profile import load_profile  # noqa: E402
from drivers.modbus.scheduler import inter_frame_gap_s  # noqa: E402
from tests.serial_line import serial_line  # noqa: E402

BITS_PER_CHAR = 10  # 8N1: start, 8 data, stop


def frame_bytes(block: Block) -> int:
    """A read's request and answer in RTU: address, function, CRC; the answer's byte count."""
    request = 1 + 1 + 4 + 2
    data = math.ceil(block.count / 8) if block.function in (1, 2) else 2 * block.count
    return request + 1 + 1 + 1 + data + 2


def planned_cycle_s(bindings: list[MeterBinding], baud: int) -> tuple[float, int, int]:
    frames = total = 0
    for binding in bindings:
        for block in plans_for(binding)[0]:
            frames += 1
            total += frame_bytes(block)
    cycle = total * BITS_PER_CHAR / baud + frames * inter_frame_gap_s(baud)
    return cycle, frames, total


def bindings_on(path: str, units: int, baud: int, poll_s: float) -> list[MeterBinding]:
    out = []
    for u in range(units):
        name = PROFILES[u % len(PROFILES)]
        device = ModbusDevice.model_validate({
            "driver": "modbus", "id": f"rtu-{u + 1}", "kind": "energy_meter", "zone": "z",
            "address": f"rtu://{path}?baud={baud}&unit={u + 1}", "profile": name,
            "poll_s": poll_s, "timeout_s": 1.0, "variant": "alternate",
        })
        out.append(MeterBinding(device, load_profile(ROOT / "config" / "profiles" /
                                                     f"{name}.yaml")))
    return out


async def run(units: int, baud: int, seconds: float) -> dict[str, Any]:
    with simulators(f"1:{units}:rtu") as ports:
        async with serial_line("127.0.0.1", ports["rtu"][0], baud=baud,
                               bits_per_char=BITS_PER_CHAR) as path:
            bindings = bindings_on(path, units, baud, poll_s=0.1)
            driver = ModbusDriver("bench:rtu", bindings, CountingSink())
            task = asyncio.create_task(driver.run(Link()))
            await asyncio.sleep(3.0)  # open, stagger, first cycles
            assert driver.scheduler is not None
            assert driver.link is not None
            polls0, requests0 = driver.scheduler.polls, driver.link.requests
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            polls = driver.scheduler.polls - polls0
            requests = driver.link.requests - requests0
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    planned, frames, total = planned_cycle_s(bindings, baud)
    measured = wall * units / max(1, polls)
    return {
        "units": units, "baud": baud, "frames_per_cycle": frames,
        "bytes_per_cycle": total, "gap_ms": round(1000 * inter_frame_gap_s(baud), 2),
        "planned_cycle_ms": round(1000 * planned, 1),
        "measured_cycle_ms": round(1000 * measured, 1),
        "measured_over_planned": round(measured / planned, 3),
        "polls_per_s": round(polls / wall, 2), "requests_per_s": round(requests / wall, 1),
        "cpu_pct_of_one_core": round(100 * cpu / wall, 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, action="append")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    for n in args.units or [8]:
        print(json.dumps(asyncio.run(run(n, args.baud, args.seconds))))
