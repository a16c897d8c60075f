"""The site's lifts and fire panel gateway, simulated for the demo: one pymodbus server per
enabled box of the site file on a free loopback port, the site's addresses pointed at
them, the lifts moving along the day's traffic, and a scripted trapped passenger and
panel fault."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

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
