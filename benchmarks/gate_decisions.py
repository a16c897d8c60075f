"""Barrier gate decisions under load: the time from a plate camera's push to the reply
that opens (or keeps shut) the gate, at the morning rush (600 vehicles an hour over 4
gates), at a 10x burst and flat out, with the heat-detector telemetry load and the
compound's Modbus meters beside it.

Processes on this machine: mosquitto, the gateway daemon (48 heat detectors, 4 gates,
the shipped 2,042-vehicle registry, and the shipped site file's 28 meters and relay
module, polled at the site file's intervals from `simulators/compound_meters.py`), the
telemetry load generator, the meters' simulator, and this process: the
4 simulated plate cameras (2 Vzenith-style JSON, 2 Hikvision-style multipart with
pictures, each from its own loopback address) and the barriers' HTTP control. The
latency is measured by the camera, from sending its push to reading the answer: an
upper bound of push received to gate command sent.

    .venv/bin/python benchmarks/gate_decisions.py --rush-seconds 60 --burst-seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.heat_detector_throughput import (  # noqa: E402
    TELEMETRY_DEVICES,
    cpu_seconds,
    percentile,
    scrape,
    wait_healthy,
)
from drivers.modbus.config import redirected  # noqa: E402
from gateway.config import load_site  # noqa: E402
from gateway.vehicles.registry import Registry  # noqa: E402
from simulators.gates import (  # noqa: E402
    BarrierServer,
    Pass,
    PlateCamera,
    PushResult,
    load_vehicles,
    play,
    traffic,
)
from tests.brokers import Mosquitto, free_port  # noqa: E402
from tests.harness import write_site  # noqa: E402

GATES = (
    ("gate-main-in", "vzenith", "127.0.0.31", None),
    ("gate-main-out", "vzenith", "127.0.0.32", None),
    ("gate-parking-b1", "hikvision", "127.0.0.33", "main-parking-b1"),
    ("gate-suv-lot", "hikvision", "127.0.0.34", "suv-lot-north"),
)
COMMANDS = ("commands: {allow: [{action: open}, {action: close}, {action: hold_open},"
            " {action: release}], rate: {per_minute: 600, burst: 100}}")
RUSH_PER_HOUR = 600.0
SHIPPED_SITE = ROOT / "config" / "site.yaml"
METERS = ("energy_meter", "water_meter", "gas_meter", "io_module")


@contextlib.contextmanager
def compound_meters() -> Iterator[dict[str, tuple[str, int]]]:
    """The shipped site file's meters served on loopback: link -> (host, port)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.compound_meters", "--site", str(SHIPPED_SITE)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        served = json.loads(process.stdout.readline())
        yield {link: (address.rpartition(":")[0], int(address.rpartition(":")[2]))
               for link, address in served.items()}
    finally:
        process.terminate()
        process.wait(10)


def meter_lines(served: dict[str, tuple[str, int]]) -> tuple[list[str], set[str]]:
    """The shipped site file's meter entries, each pointed at its simulated link, and
    the zones they name."""
    raw = {d["id"]: d for d in yaml.safe_load(SHIPPED_SITE.read_text())["devices"]}
    lines, zones = [], set()
    for device in load_site(SHIPPED_SITE).devices_of("modbus"):
        if device.kind not in METERS or not device.enabled:
            continue
        entry = dict(raw[device.id])
        entry["address"] = redirected(device, *served[device.endpoint.link]).address
        lines.append("  - " + yaml.safe_dump(entry, default_flow_style=True,
                                             width=100_000).strip())
        zones.add(device.zone)
    return lines, zones


def site_with_gates(folder: Path, broker: tuple[str, int], barriers: BarrierServer,
                    push_port: int, meters: dict[str, tuple[str, int]] | None) -> Path:
    path = write_site(folder, devices=broker, detectors=48)
    lines = path.read_text().splitlines()
    at = lines.index("devices:") + 1
    zones = lines.index("    zones:") + 1
    meter_entries, meter_zones = meter_lines(meters) if meters else ([], set())
    zone_lines = ["      - {id: main-gatehouse, name: Gatehouse}",
                  "      - {id: main-parking-b1, name: Official car park B1}",
                  "      - {id: suv-lot-north, name: SUV lot}"]
    named = {"main-gatehouse", "main-parking-b1", "suv-lot-north"} | {
        line.split("id: ")[1].split(",")[0] for line in lines if line.startswith("      - {id: ")}
    zone_lines += [f"      - {{id: {z}, name: {z}}}" for z in sorted(meter_zones - named)]
    lines[zones:zones] = zone_lines
    at += len(zone_lines)
    lines[at:at] = meter_entries
    at += len(meter_entries)
    gate_lines = []
    for gate, vendor, source, area in GATES:
        extra = f", area: {area}, gate_api: '{barriers.url(gate)}'" if area else ""
        gate_lines.append(
            f"  - {{driver: http_push, id: {gate}, kind: barrier_gate, zone: "
            f"{area or 'main-gatehouse'}, address: {source}, vendor: {vendor}, heartbeat_s: 30"
            f"{', direction: out' if 'out' in gate else ''}{extra}, {COMMANDS}}}")
    lines[at:at] = gate_lines
    lines += ["gates:", f"  listener: {{host: 127.0.0.1, port: {push_port}}}"]
    path.write_text("\n".join(lines) + "\n")
    registry = Registry(folder / "data" / "vehicles.db")
    registry.import_csv((ROOT / "config" / "vehicles.csv").read_text(encoding="utf-8"),
                        actor="benchmark", now=time.time())
    registry.close()
    return path


def meter_readings(db: Path, since: float) -> dict[str, int]:
    """Readings the store holds per Modbus meter, from the minutes since `since`."""
    ids = {d.id for d in load_site(SHIPPED_SITE).devices_of("modbus") if d.kind in METERS}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT source, SUM(count) FROM readings WHERE minute >= ? "
                            "GROUP BY source", (int(since // 60),)).fetchall()
    return {str(source): int(n) for source, n in rows if source in ids}


async def phase(cams: dict[str, PlateCamera], passes: list[Pass],
                per_hour: float | None) -> list[tuple[Pass, PushResult]]:
    """Play `passes` as Poisson arrivals at `per_hour`, or back to back (None): each
    camera one push at a time, as a camera does."""
    rng = random.Random(11)
    out: list[tuple[Pass, PushResult]] = []
    locks = {g: asyncio.Lock() for g in cams}

    async def one(p: Pass) -> None:
        async with locks[p.gate]:
            out.append((p, await play(cams[p.gate], p)))

    tasks = []
    for p in passes:
        tasks.append(asyncio.create_task(one(p)))
        if per_hour is not None:
            await asyncio.sleep(rng.expovariate(per_hour / 3600.0))
        else:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return out


def summary(name: str, results: list[tuple[Pass, PushResult]], wall_s: float,
            opened: int) -> str:
    decided = [r for p, r in results if p.kind not in ("offline", "duplicate")]
    ms = [r.seconds * 1000 for r in decided]
    bad = sum(1 for _, r in results if r.status != 200)
    if not ms:
        return f"{name}: no decisions"
    return (f"{name:<18} {len(results):5d} pushes in {wall_s:6.1f} s "
            f"({len(results) / wall_s:6.1f}/s): push->reply p50 {percentile(ms, 0.5):6.1f} ms,"
            f" p99 {percentile(ms, 0.99):6.1f} ms, max {max(ms):6.1f} ms,"
            f" mean {statistics.mean(ms):5.1f} ms; opened {opened}, non-200 {bad}")


def answered_within(metrics: dict[str, float], seconds: str = "0.025") -> tuple[float, float]:
    """(answers within `seconds`, all answers) by the gateway's own histogram."""
    within = total = 0.0
    for vendor in ("vzenith", "hikvision"):
        within += metrics.get(f'gateway_gate_answer_seconds_bucket{{le="{seconds}",'
                              f'vendor="{vendor}"}}', 0.0)
        total += metrics.get(f'gateway_gate_answer_seconds_count{{vendor="{vendor}"}}', 0.0)
    return within, total


def opened(barriers: BarrierServer) -> int:
    """Barrier opens so far: by the Vzenith reply (the camera's relay) or the HTTP control."""
    return sum(b.commands.count("open") for b in barriers.barriers.values())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rush-seconds", type=float, default=60)
    parser.add_argument("--burst-seconds", type=float, default=60)
    parser.add_argument("--flat-out", type=int, default=2000, help="pushes back to back")
    parser.add_argument("--telemetry", type=float, default=2000,
                        help="heat-detector reports/s beside it (0: none)")
    parser.add_argument("--folder", default=None,
                        help="where the site file and the data folder go (default: the "
                             "system's temporary folder; /dev/shm takes the disk out)")
    parser.add_argument("--meters", action=argparse.BooleanOptionalAction, default=True,
                        help="the compound's Modbus meters beside it (default: yes)")
    args = parser.parse_args()
    vehicles = load_vehicles(ROOT / "config" / "vehicles.csv")
    entry_gates = [g for g, *_ in GATES if "out" not in g]
    areas = {g: a for g, _, _, a in GATES if a}

    barriers = BarrierServer([g for g, *_ in GATES])
    await barriers.start()
    meters_served: contextlib.AbstractContextManager[dict[str, tuple[str, int]]] = (
        compound_meters() if args.meters else contextlib.nullcontext({}))
    with (
        Mosquitto() as broker,
        tempfile.TemporaryDirectory(dir=args.folder) as tmp,
        meters_served as served,
    ):
        push_port = free_port()
        site = site_with_gates(Path(tmp), (broker.host, broker.port), barriers, push_port,
                               served)
        http = free_port()
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "run", "--site", str(site),
            "--http-port", str(http), "--log-level", "error",
            cwd=ROOT, stderr=(Path(tmp) / "gateway.log").open("w"),
        )
        blaster = None
        lines: list[str] = []
        try:
            await wait_healthy(http)
            listener = f"http://127.0.0.1:{push_port}"
            cams = {g: await PlateCamera(g, v, s, listener,
                                         barrier=barriers.barriers[g]).__aenter__()
                    for g, v, s, _ in GATES}
            total = args.rush_seconds + args.burst_seconds + 600
            if args.telemetry:
                blaster = await asyncio.create_subprocess_exec(
                    sys.executable, "-c",
                    "import asyncio\n"
                    "from benchmarks.load import blast\n"
                    f"asyncio.run(blast({broker.host!r}, {broker.port}, {args.telemetry}, "
                    f"{total}, {TELEMETRY_DEVICES!r}, alarm_every=None))\n",
                    cwd=ROOT, stdout=asyncio.subprocess.DEVNULL,
                )
                await asyncio.sleep(2)
            cpu0 = cpu_seconds(gateway.pid)
            started = time.time()
            pushes = 0
            for name, per_hour, seconds in (
                ("morning rush", RUSH_PER_HOUR, args.rush_seconds),
                ("10x burst", RUSH_PER_HOUR * 10, args.burst_seconds),
            ):
                n = max(1, round(per_hour * seconds / 3600))
                passes = traffic(vehicles, entry_gates, n, seed=len(name), areas=areas)
                t0, opens = time.perf_counter(), opened(barriers)
                w0, n0 = answered_within(scrape(http))
                results = await phase(cams, passes, per_hour)
                lines.append(summary(name, results, time.perf_counter() - t0,
                                     opened(barriers) - opens))
                w1, n1 = answered_within(scrape(http))
                lines.append(f"{'':18} the gateway's own clock: {w1 - w0:.0f} of {n1 - n0:.0f}"
                             f" answers within 25 ms ({(w1 - w0) / max(1, n1 - n0):.1%})")
                pushes += len(results)
            passes = traffic(vehicles, entry_gates, args.flat_out, seed=5, areas=areas)
            t0, opens = time.perf_counter(), opened(barriers)
            w0, n0 = answered_within(scrape(http))
            results = await phase(cams, passes, None)
            lines.append(summary("flat out", results, time.perf_counter() - t0,
                                 opened(barriers) - opens))
            w1, n1 = answered_within(scrape(http))
            lines.append(f"{'':18} the gateway's own clock: {w1 - w0:.0f} of {n1 - n0:.0f}"
                         f" answers within 25 ms ({(w1 - w0) / max(1, n1 - n0):.1%})")
            pushes += len(results)
            cpu = cpu_seconds(gateway.pid) - cpu0
            wall = time.time() - started
            for cam in cams.values():
                await cam.__aexit__()
        finally:
            if blaster is not None and blaster.returncode is None:
                blaster.terminate()
                await blaster.wait()
            gateway.terminate()
            async with asyncio.timeout(30):
                await gateway.wait()
            await barriers.stop()
        meters = meter_readings(Path(tmp) / "data" / "gateway.db", started) if served else {}
    telemetry = (f"with {args.telemetry:,.0f} heat-detector reports/s beside it"
                 if args.telemetry else "no telemetry beside it")
    print(f"gate decisions, 4 gates, 2,042 registered vehicles, {telemetry}")
    if served:
        print(f"Modbus beside it:  {sum(meters.values()):,} meter readings stored from "
              f"{len(meters)} devices in the minutes of the phases "
              f"({sum(meters.values()) / wall:.1f}/s)")
    for line in lines:
        print(line)
    print(f"gateway CPU:       {cpu:.1f} s over the three phases (telemetry included)"
          f" for {pushes} pushes")


if __name__ == "__main__":
    asyncio.run(main())
