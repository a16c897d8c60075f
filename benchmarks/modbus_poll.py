"""Modbus polling cost: the driver against simulated meters in another process.

    .venv/bin/python benchmarks/modbus_poll.py [--seconds 10] [--only compound]

Scenarios:
- plan: one Modbus TCP endpoint, 5 meters polled every 0.1 s, block reads as planned
  against one request per register (what the peers do);
- compound: ~30 meters at 1 Hz (one TCP gateway, three serial servers): with the
  profiles' own gap bridges (the default), without any, and with a 64-register one;
- fleet: 1,000 devices at 1 Hz over 20 TCP endpoints and 4 RTU lines, with the
  profiles' gap bridges and without.

Prints requests/s, registers/s, CPU seconds per 1,000 polls, CPU % of one core, poll
lateness p50/p99 and the gateway process's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drivers.modbus.config import ModbusDevice  # noqa: E402
from drivers.modbus.driver import MeterBinding, ModbusDriver, plans_for  # noqa: E402
from drivers.modbus.profile import load_profile  # noqa: E402
from gateway.events import Event, Heartbeat, Reading, SeqCounter  # noqa: E402

PROFILES = ("eastron-sdm630", "chint-dtsu666", "acrel-adw300", "water-meter", "gas-meter")


class CountingSink:
    def __init__(self) -> None:
        self.readings = 0
        self.rejects = 0
        self._seq = SeqCounter()

    def telemetry(self, item: Reading | Heartbeat) -> None:
        self.readings += 1

    async def event(self, event: Event) -> None:
        return None

    def settle(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def next_seq(self, source: str) -> int:
        return self._seq.next(source)

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        self.rejects += 1

    def sequence(self, driver: str, source: str, *, lost: int = 0, duplicate: bool = False,
                 restarted: bool = False) -> None:
        return None


class Link:
    def up(self) -> None:
        return None

    def degraded(self, reason: str) -> None:
        return None


@dataclass
class Result:
    name: str
    devices: int
    seconds: float
    polls: int
    requests: int
    registers: int
    cpu_s: float
    late: list[float] = field(default_factory=list)
    planned_per_device: float = 0.0

    def row(self) -> dict[str, Any]:
        late = sorted(self.late) or [0.0]
        return {
            "scenario": self.name,
            "devices": self.devices,
            "polls_per_s": round(self.polls / self.seconds, 1),
            "requests_per_s": round(self.requests / self.seconds, 1),
            "registers_per_s": round(self.registers / self.seconds, 1),
            "requests_per_poll": round(self.requests / max(1, self.polls), 2),
            "planned_requests_per_poll": round(self.planned_per_device, 2),
            "cpu_s_per_1000_polls": round(1000 * self.cpu_s / max(1, self.polls), 4),
            "cpu_pct_of_one_core": round(100 * self.cpu_s / self.seconds, 1),
            "late_p50_ms": round(1000 * late[len(late) // 2], 1),
            "late_p99_ms": round(1000 * late[min(len(late) - 1, int(len(late) * 0.99))], 1),
            "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


@contextlib.contextmanager
def simulators(*specs: str) -> Any:
    args = [sys.executable, "-m", "simulators.modbus_meters"]
    for spec in specs:
        args += ["--fleet", spec]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(10)


def bindings_for(scheme: str, port: int, units: int, poll_s: float,
                 per_tag: bool = False, gap: int | None = 0) -> list[MeterBinding]:
    """`gap`: the devices' `workarounds.gap_bridge` (None: each profile's own)."""
    out = []
    for u in range(units):
        name = PROFILES[u % len(PROFILES)]
        device = ModbusDevice.model_validate({
            "driver": "modbus", "id": f"m{port}-{u + 1}", "kind": "energy_meter", "zone": "z",
            "address": f"{scheme}://127.0.0.1:{port}/{u + 1}", "profile": name,
            "poll_s": poll_s, "timeout_s": 1.0, "variant": "alternate",
            "workarounds": {"max_block": 1} if per_tag else (
                {} if gap is None else {"gap_bridge": gap}),
        })
        out.append(MeterBinding(device, load_profile(ROOT / "config" / "profiles" /
                                                     f"{name}.yaml")))
    return out


async def measure(name: str, groups: list[list[MeterBinding]], seconds: float) -> Result:
    late: list[float] = []
    measuring = False

    def on_late(value: float) -> None:
        if measuring:
            late.append(value)

    drivers = [ModbusDriver(f"bench{i}", g, CountingSink(), on_late=on_late)
               for i, g in enumerate(groups)]
    tasks = [asyncio.create_task(d.run(Link())) for d in drivers]
    await asyncio.sleep(2.0)  # connect, stagger, warm up

    def totals() -> tuple[int, int, int]:
        polls = sum(d.scheduler.polls for d in drivers if d.scheduler)
        requests = sum(d.link.requests for d in drivers if d.link)
        return polls, requests, 0

    polls0, requests0, _ = totals()
    cpu0, wall0 = time.process_time(), time.monotonic()
    measuring = True
    await asyncio.sleep(seconds)
    measuring = False
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    polls1, requests1, _ = totals()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    every = [b for g in groups for b in g]
    per_device = [sum(blk.count for blk in plans_for(b)[0]) for b in every]
    requests_per_device = statistics.mean(len(plans_for(b)[0]) for b in every)
    polls = polls1 - polls0
    registers = int(polls * statistics.mean(per_device))
    return Result(name, len(every), wall, polls, requests1 - requests0, registers, cpu, late,
                  requests_per_device)


async def main(seconds: float, only: str | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if only in (None, "plan"):
        rows += await _plan(seconds)
    if only in (None, "compound"):
        rows += await _compound(seconds)
    if only in (None, "fleet"):
        rows += await _fleet(seconds)
    return rows


async def _plan(seconds: float) -> list[dict[str, Any]]:
    rows = []
    with simulators("1:5") as ports:
        port = ports["tcp"][0]
        for label, per_tag, gap in [("plan: one request per register", True, 0),
                                    ("plan: block reads", False, 0),
                                    ("plan: block reads, gap bridge 64", False, 64)]:
            groups = [bindings_for("tcp", port, 5, 0.1, per_tag, gap)]
            rows.append((await measure(label, groups, seconds)).row())
    return rows


async def _compound(seconds: float) -> list[dict[str, Any]]:
    rows = []
    with simulators("1:6", "3:8:rtu") as ports:
        compound: list[tuple[str, int | None]] = [
            ("compound: 30 meters at 1 Hz, no gap bridge", 0),
            ("compound: 30 meters at 1 Hz, the profiles' gap bridges", None),
            ("compound: 30 meters at 1 Hz, gap bridge 64", 64)]
        for label, gap in compound:
            groups = [bindings_for("tcp", ports["tcp"][0], 6, 1.0, gap=gap)]
            groups += [bindings_for("rtu+tcp", p, 8, 1.0, gap=gap) for p in ports["rtu"]]
            rows.append((await measure(label, groups, seconds)).row())
    return rows


async def _fleet(seconds: float) -> list[dict[str, Any]]:
    rows = []
    with simulators("20:40", "4:50:rtu") as ports:
        # The profiles' own gap bridges (the default), and every bridge off.
        for label, gap in [("fleet: 1000 devices at 1 Hz", None),
                           ("fleet: 1000 devices at 1 Hz, no gap bridge", 0)]:
            groups = [bindings_for("tcp", p, 40, 1.0, gap=gap) for p in ports["tcp"]]
            groups += [bindings_for("rtu+tcp", p, 50, 1.0, gap=gap) for p in ports["rtu"]]
            rows.append((await measure(label, groups, seconds)).row())
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["plan", "compound", "fleet"])
    args = parser.parse_args()
    for row in asyncio.run(main(args.seconds, args.only)):
        print(json.dumps(row, ensure_ascii=False))
