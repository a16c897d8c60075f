"""Lifts and the fire panel: polling cost, time to the desk, and the rules' cost.

    .venv/bin/python benchmarks/lifts.py [--seconds 10] [--rounds 3]

Scenarios:
- poll: the site's 12 lift boxes and the fire panel gateway (13 Modbus TCP endpoints,
  simulated in another process, lifts moving along the morning's traffic) polled at 1 Hz
  and 2 Hz by the driver: CPU of the driver's process and poll lateness;
- alarm: the whole daemon (store, rules, outbox) with mosquitto and a desk subscriber, at
  1 Hz and 2 Hz: from a simulated entrapment condition to the alert on the broker, minus
  T (5 s here), and from a panel point's fire bit to its alert, p50/p99/max;
- rules: the elevator rules per status change, the fire model per point change, and the
  whole lift family's cost for an item that is none of its business.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.modbus_poll import CountingSink, Link  # noqa: E402
from drivers.modbus.config import ModbusDevice  # noqa: E402
from drivers.modbus.driver import MeterBinding, ModbusDriver  # noqa: E402
from drivers.modbus.profile import load_profile  # noqa: E402
from gateway.app import Gateway, Overrides  # noqa: E402
from gateway.config import BrokerConfig, Site, load_site  # noqa: E402
from gateway.events import Event, Reading, Severity  # noqa: E402
from gateway.lifts import build_modules  # noqa: E402
from tests.brokers import Mosquitto  # noqa: E402
from tests.mqtt_client import mqtt_client  # noqa: E402

SITE = ROOT / "config" / "site.yaml"
T_S = 5.0


@contextlib.contextmanager
def simulated_boxes() -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.compound_lifts", "--site", str(SITE)], cwd=ROOT,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        yield process, json.loads(process.stdout.readline())
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.terminate()
        process.wait(10)


def control(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    answer = process.stdout.readline().strip()
    if answer != "ok":
        raise RuntimeError(f"{line}: {answer}")


def boxes_of(site: Site, addresses: dict[str, str], hz: float) -> list[ModbusDevice]:
    return [d.model_copy(update={"address": addresses[d.id], "poll_s": 1.0 / hz})
            for d in site.devices_of("modbus") if d.id in addresses]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def poll(hz: float, seconds: float) -> dict[str, Any]:
    site = load_site(SITE)
    with simulated_boxes() as (_process, addresses):
        late: list[float] = []
        measuring = False

        def on_late(value: float) -> None:
            if measuring:
                late.append(value)

        sinks = []
        drivers = []
        for device in boxes_of(site, addresses, hz):
            sink = CountingSink()
            binding = MeterBinding(device, load_profile(
                ROOT / "config" / "profiles" / f"{device.profile}.yaml"))
            sinks.append(sink)
            drivers.append(ModbusDriver(device.id, [binding], sink, on_late=on_late))
        tasks = [asyncio.create_task(d.run(Link())) for d in drivers]
        await asyncio.sleep(2.0)
        polls0 = sum(d.scheduler.polls for d in drivers if d.scheduler)
        cpu0, wall0 = time.process_time(), time.monotonic()
        measuring = True
        await asyncio.sleep(seconds)
        measuring = False
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        polls = sum(d.scheduler.polls for d in drivers if d.scheduler) - polls0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"scenario": f"poll: 12 lifts + panel at {hz:g} Hz", "endpoints": len(drivers),
            "polls_per_s": round(polls / wall, 1), "cpu_pct_of_one_core": round(
                100 * cpu / wall, 1),
            "cpu_ms_per_poll": round(1000 * cpu / max(1, polls), 3),
            "late_p50_ms": round(1000 * pct(late, 0.5), 1) if late else None,
            "late_p99_ms": round(1000 * pct(late, 0.99), 1) if late else None}


async def alarm(hz: float, rounds: int) -> dict[str, Any]:
    base = load_site(SITE)
    with Mosquitto() as broker, simulated_boxes() as (process, addresses), \
            tempfile.TemporaryDirectory() as tmp:
        rules = base.rules.model_copy(update={"elevator": base.rules.elevator.model_copy(
            update={"entrapment_s": T_S})})
        site = base.model_copy(update={
            "devices": boxes_of(base, addresses, hz), "rules": rules,
            "brokers": {"site": BrokerConfig(host=broker.host, port=broker.port)}})
        gw = Gateway(site, SITE, overrides=Overrides(data_dir=Path(tmp), http_port=0))
        raised: dict[str, float] = {}
        cleared: dict[str, float] = {}
        async with mqtt_client(broker.host, broker.port, "bench-desk") as desk:
            await desk.subscribe([(f"{site.gateway.topic_prefix}/alert/#", 1)])

            async def listen() -> None:
                while True:
                    for message in await desk.next_batch():
                        doc = json.loads(message.payload)
                        if "alert" in doc:
                            book = raised if doc["change"] == "raised" else cleared
                            book.setdefault(doc["alert"]["key"], time.time())

            listener = asyncio.create_task(listen())
            runner = asyncio.create_task(gw.run())
            await gw.ready.wait()
            await asyncio.sleep(3.0)  # every box answered
            lifts = [d.id for d in site.devices_of("modbus") if d.kind == "elevator"]
            panel = next(d for d in site.devices_of("modbus") if d.panel is not None)
            assert panel.panel is not None
            double = {z.id for b in site.buildings for z in b.zones if z.fire_triggers == 2}
            points = [p.id for p in panel.panel.points
                      if p.kind == "detector" and p.zone in double]
            trapped: list[float] = []
            fires: list[float] = []
            for _ in range(rounds):
                injected: dict[str, float] = {}
                for lift in random.sample(lifts, len(lifts)):
                    await asyncio.sleep(random.uniform(0, 1.0 / hz))  # any poll phase
                    injected[f"elevator.entrapment:{lift}"] = time.time()
                    control(process, f"trap {lift}")
                for point in points:
                    await asyncio.sleep(random.uniform(0, 1.0 / hz))
                    injected[f"fire.point.fire:{point}"] = time.time()
                    control(process, f"alarm {point}")
                async with asyncio.timeout(60):
                    while not set(injected) <= set(raised):
                        await asyncio.sleep(0.02)
                for key, t0 in injected.items():
                    if key.startswith("elevator.entrapment"):
                        trapped.append(raised.pop(key) - t0 - T_S)
                    else:
                        fires.append(raised.pop(key) - t0)
                for lift in lifts:
                    control(process, f"release {lift}")
                for point in points:
                    control(process, f"clear {point}")
                async with asyncio.timeout(60):
                    while not set(injected) <= set(cleared):
                        await asyncio.sleep(0.02)
                for key in injected:
                    cleared.pop(key)
            gw.request_shutdown()
            await runner
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def stats(values: list[float]) -> dict[str, float]:
        return {"n": len(values), "p50_s": round(pct(values, 0.5), 3),
                "p99_s": round(pct(values, 0.99), 3), "max_s": round(max(values), 3)}

    return {"scenario": f"alarm: daemon + mosquitto, boxes at {hz:g} Hz",
            "entrapment_minus_T": stats(trapped), "panel_fire_point": stats(fires)}


def rules_cost(n: int = 200_000) -> dict[str, Any]:
    site = load_site(SITE)
    mods = build_modules(site)
    lifts = [d.id for d in site.devices_of("modbus") if d.kind == "elevator"]
    base = {"moving": False, "direction": "none", "floor": 3, "door_open": False,
            "door_zone": True, "occupied": True, "technician": False, "power_loss": False,
            "mode": "normal", "fault_code": 0, "fault": ""}
    states = [base, base | {"door_open": True}, base | {"moving": True, "door_zone": False,
                                                        "direction": "up", "floor": 4},
              base | {"floor": 4}]
    events = [Event("elevator.status", lifts[i % len(lifts)], i, float(i), Severity.INFO,
                    "z", data=states[(i // len(lifts)) % len(states)]) for i in range(n)]
    t0 = time.perf_counter()
    for e in events:
        mods.elevator.observe(e, e.time)
    lift_us = (time.perf_counter() - t0) / n * 1e6
    assert site.devices_of("modbus")
    panel = next(d for d in site.devices_of("modbus") if d.panel is not None)
    assert panel.panel is not None
    ids = [p.id for p in panel.panel.points]
    bit_sets = [["fault"], [], ["isolated"], []]
    point_events = [Event("fire.point.status", ids[i % len(ids)], i, float(i), Severity.MAJOR,
                          "z", data={"bits": bit_sets[(i // len(ids)) % 4]}) for i in range(n)]
    t0 = time.perf_counter()
    for e in point_events:
        mods.fire_model.observe(e, e.time)
    point_us = (time.perf_counter() - t0) / n * 1e6
    other = [Reading(f"hd-main-{i % 36 + 1:02d}", "temperature", 24.0, "celsius", float(i))
             for i in range(n)]
    t0 = time.perf_counter()
    for r in other:
        for m in mods.modules:
            m.observe(r, r.time)
    other_us = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for i in range(n // 100):
        for m in mods.modules:
            m.tick(float(i))
    tick_us = (time.perf_counter() - t0) / (n // 100) * 1e6
    return {"scenario": "rules", "lift_status_change_us": round(lift_us, 2),
            "panel_point_change_us": round(point_us, 2),
            "unrelated_item_us": round(other_us, 2), "tick_12_lifts_us": round(tick_us, 1)}


async def main(seconds: float, rounds: int) -> list[dict[str, Any]]:
    rows = [rules_cost()]
    for hz in (1.0, 2.0):
        rows.append(await poll(hz, seconds))
    for hz in (1.0, 2.0):
        rows.append(await alarm(hz, rounds))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for row in asyncio.run(main(args.seconds, args.rounds)):
        print(json.dumps(row, ensure_ascii=False))
