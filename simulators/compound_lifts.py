"""The site's lifts and fire panel gateway, simulated for the demo: one pymodbus server per
enabled box of the site file on a free loopback port, the site's addresses pointed at
them, the lifts moving along the day's traffic, and a scripted trapped passenger and
panel fault."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers.modbus.config import ModbusDevice
from gateway.config import Site
from simulators.fire_panel import SimulatedPanel
from simulators.lifts import LiftFleet, lift
from simulators.modbus_meters import MeterServer

log = logging.getLogger("simulators.lifts")

# (seconds after start, what): a passenger trapped in office building B, freed after two
# minutes; a smoke detector in the canteen reporting a fault, then repaired.
SCENARIO: list[tuple[float, str]] = [
    (20, "trap lift-main-05"),
    (25, "fault sd-m-canteen"),
    (140, "release lift-main-05"),
    (260, "repair sd-m-canteen"),
]


@dataclass
class CompoundLifts:
    site: Site  # the site file with every box's address on loopback
    fleet: LiftFleet
    panel: SimulatedPanel | None
    servers: list[MeterServer]

    @classmethod
    async def start(cls, site: Site, speed: float = 1.0) -> CompoundLifts:
        boxes: dict[str, ModbusDevice] = {}
        lifts = []
        panel: SimulatedPanel | None = None
        servers: list[MeterServer] = []
        for device in site.devices_of("modbus"):
            if device.kind == "elevator" and device.lift is not None:
                floors = device.lift.floors
                box = lift(device.id, device.profile, device.endpoint.unit, lowest=floors.lowest,
                           highest=floors.highest, designated_floor=device.lift.designated_floor,
                           rated_speed_mps=device.lift.rated_speed_mps)
                lifts.append(box)
                servers.append(await MeterServer([box.meter]).start())
            elif device.kind == "fire_panel" and device.panel is not None and panel is None:
                panel = SimulatedPanel(device.endpoint.unit, device.profile)
                servers.append(await MeterServer([panel.meter]).start())
            else:
                continue
            boxes[device.id] = device.model_copy(update={
                "address": f"tcp://127.0.0.1:{servers[-1].port}/{device.endpoint.unit}"})
        devices = [boxes.get(d.id, d) for d in site.devices]
        fleet = LiftFleet(lifts, speed=speed)
        return cls(site.model_copy(update={"devices": devices}), fleet, panel, servers)

    def _point(self, point_id: str) -> int:
        for device in self.site.devices_of("modbus"):
            if device.panel is not None:
                for p in device.panel.points:
                    if p.id == point_id:
                        return p.point
        raise KeyError(point_id)

    async def run(self) -> None:
        """Move the lifts and play the scenario until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.fleet.run(), name="lift-traffic")
            started = asyncio.get_running_loop().time()
            for at, step in SCENARIO:
                await asyncio.sleep(max(0.0, started + at - asyncio.get_running_loop().time()))
                action, target = step.split()
                log.info("demo scenario: %s %s", action, target)
                if action in ("trap", "release") and target in self.fleet.lifts:
                    getattr(self.fleet.lifts[target], action)()
                elif action in ("fault", "repair") and self.panel is not None:
                    self.panel.fault(self._point(target), action == "fault")

    async def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                await server.stop()


def apply(lifts: CompoundLifts, line: str) -> str:
    """One control line: `trap|release|stop_outside_landing|lose_power|restore_power|
    ignore_fire_return|skip_visits LIFT`, `visit LIFT MINUTES`, `recall on|off`, or
    `alarm|clear|fault|repair|isolate|deisolate POINT`. Returns "ok" or the error."""
    words = line.split()
    if not words:
        return "error: empty line"
    action, args = words[0], words[1:]
    try:
        if action == "recall":
            lifts.fleet.recall(args[0] == "on")
        elif action in ("ignore_fire_return", "skip_visits"):
            setattr(lifts.fleet.lifts[args[0]], action, True)
        elif action == "visit":
            lifts.fleet.lifts[args[0]].visit(float(args[1]))
        elif action in ("trap", "release", "stop_outside_landing", "lose_power",
                        "restore_power"):
            getattr(lifts.fleet.lifts[args[0]], action)()
        elif lifts.panel is not None and action in ("alarm", "clear", "fault", "repair",
                                                    "isolate", "deisolate"):
            point = lifts._point(args[0])
            bit = {"alarm": "fire", "clear": "fire", "fault": "fault", "repair": "fault",
                   "isolate": "isolated", "deisolate": "isolated"}[action]
            lifts.panel.set_point(point, bit, action in ("alarm", "fault", "isolate"))
        else:
            return f"error: unknown action {action!r}"
    except (KeyError, IndexError, ValueError) as exc:
        return f"error: {exc!r}"
    return "ok"


async def _serve(site_path: str, speed: float) -> None:
    """Serve the site's boxes; print {device: address} as one JSON line, then take control
    lines on stdin (see `apply`), answering each on stdout."""
    import json
    import sys

    from gateway.config import load_site

    lifts = await CompoundLifts.start(load_site(site_path), speed=speed)
    addresses = {d.id: d.address for d in lifts.site.devices_of("modbus")
                 if d.kind in ("elevator", "fire_panel")}
    print(json.dumps(addresses), flush=True)
    loop = asyncio.get_running_loop()
    runner = asyncio.create_task(lifts.fleet.run(), name="lift-traffic")
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            print(apply(lifts, line), flush=True)
    finally:
        runner.cancel()
        await lifts.stop()


def pointed_site(site_path: Path, addresses: dict[str, str], out: Path) -> None:
    """A copy of the site file (comments kept) at `out` with each simulated box's address
    on loopback, and the profiles beside it: `compound-gateway run --site OUT`."""
    import shutil

    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: the engineer's comments and order stay
    data = yaml.load(site_path.read_text(encoding="utf-8"))
    for device in data.get("devices") or []:
        if device.get("id") in addresses:
            device["address"] = addresses[device["id"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    profiles = site_path.parent / "profiles"
    if profiles.is_dir() and profiles.resolve() != (out.parent / "profiles").resolve():
        shutil.copytree(profiles, out.parent / "profiles", dirs_exist_ok=True)
    # Whole or not at all: a gateway started on `out` never reads half of it.
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("w", encoding="utf-8") as fh:
        yaml.dump(data, fh)
    partial.replace(out)


def parse_step(text: str) -> tuple[float, str]:
    """A timed control line: `SECONDS LINE`, e.g. `20 trap lift-main-05` (see `apply`)."""
    at, _, line = text.strip().partition(" ")
    try:
        seconds = float(at)
    except ValueError:
        raise ValueError(f"a lift step starts with its second, got {text!r}") from None
    if seconds < 0 or not line.strip():
        raise ValueError(f"a lift step is SECONDS ACTION TARGET, got {text!r}")
    return seconds, line.strip()


async def serve_site(site_path: Path, *, speed: float = 1.0,
                     steps: Sequence[tuple[float, str]] = (),
                     site_out: Path | None = None) -> None:
    """`compound-gateway simulate --lifts`: serve the site file's lift boxes and fire panel
    gateway on loopback, move the lifts along the day's traffic and play the timed control
    lines, until cancelled. A step that fails is logged with its error and the rest go on."""
    from gateway.config import load_site

    lifts = await CompoundLifts.start(load_site(site_path), speed=speed)
    try:
        addresses = {d.id: d.address for d in lifts.site.devices_of("modbus")
                     if d.kind in ("elevator", "fire_panel")}
        log.info("event=lifts_served boxes=%d addresses=%s", len(addresses),
                 " ".join(f"{k}={v}" for k, v in sorted(addresses.items())))
        if site_out is not None:
            pointed_site(site_path, addresses, site_out)
            log.info("event=lifts_site_written path=%s", site_out)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(lifts.fleet.run(), name="lift-traffic")
            started = asyncio.get_running_loop().time()
            for at, line in sorted(steps):
                await asyncio.sleep(max(0.0, started + at - asyncio.get_running_loop().time()))
                answer = apply(lifts, line)
                log.info("event=lift_step line=%r answer=%r", line, answer)
    finally:
        await lifts.stop()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--site", default="config/site.yaml")
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.site, args.speed))


if __name__ == "__main__":
    main()
