"""Simulated elevators: real pymodbus servers whose registers come from the same elevator
profiles the driver reads (Sanling, Otis, Jianghong). Each lift moves between floors
along a day's traffic, and can be made to trap a passenger, stop outside a landing while
empty, lose power, ignore fire return, or be skipped by its firm's visits. Tests (and the
demo) drive the injections through the Python methods below.

    python -m simulators.lifts --port 5030 elevator-sanling:1 elevator-otis:2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drivers.modbus.profile import Profile, load_profile
from drivers.modbus.status import ElevatorStatus, Flag
from simulators.modbus_meters import MeterServer, SimulatedMeter

PROFILES = Path(__file__).resolve().parent.parent / "config" / "profiles"

# Calls per minute by hour of the day: the morning arrival, lunch, the evening leave.
_TRAFFIC = (0.05, 0.02, 0.02, 0.02, 0.02, 0.05, 0.2, 1.0, 4.0, 2.5, 1.5, 2.0, 3.5, 2.5,
            1.5, 1.5, 2.0, 3.5, 1.5, 0.5, 0.3, 0.2, 0.1, 0.05)
FLOOR_TIME_S = 2.5  # one floor of travel
DOOR_TIME_S = 6.0  # doors open at a landing


def _set_flag(values: dict[str, float], flag: Flag, yes: bool) -> None:
    on = yes != flag.invert
    current = int(values.get(flag.metric, 0))
    if flag.bit is not None:
        word = current | (1 << flag.bit) if on else current & ~(1 << flag.bit)
        values[flag.metric] = float(word)
        return
    when = flag.when or []
    if on and current not in when:
        values[flag.metric] = float(when[0])
    elif not on and current in when:
        values[flag.metric] = float(next(v for v in range(0, 0x10000) if v not in when))


@dataclass
class SimulatedLift:
    """One lift and its monitoring box (a unit of a `MeterServer`)."""

    id: str
    meter: SimulatedMeter
    lowest: int = 1
    highest: int = 12
    designated_floor: int = 1
    rated_speed_mps: float = 1.75
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    # state
    floor: int = 1
    target: int | None = None
    moving: bool = False
    door_open: bool = False
    door_timer: float = 0.0
    travel: float = 0.0  # seconds into the current floor
    occupied: bool = False
    technician: bool = False
    visit_left_s: float = 0.0
    power_loss: bool = False
    mode: str = "normal"
    fault_code: int = 0
    between_floors: bool = False  # stopped outside the door zone
    # injections
    ignore_fire_return: bool = False
    skip_visits: bool = False
    fire_recall: bool = False
    trips: int = 0
    running_s: float = 0.0
    door_cycles: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.meter.profile.status, ElevatorStatus):
            raise ValueError(f"{self.meter.profile.profile} is not an elevator profile")
        self.floor = self.designated_floor
        self.write()

    @property
    def spec(self) -> ElevatorStatus:
        status = self.meter.profile.status
        assert isinstance(status, ElevatorStatus)
        return status

    # ---- injections ---------------------------------------------------------------------
    def trap(self) -> None:
        """Stop between floors with the doors shut and a passenger inside."""
        self.moving, self.door_open, self.between_floors, self.occupied = False, False, True, True
        self.target = None
        self.write()

    def stop_outside_landing(self) -> None:
        """Stop between floors, empty."""
        self.trap()
        self.occupied = False
        self.write()

    def release(self) -> None:
        """The rescue: the car is brought to the nearest landing and the doors open."""
        self.between_floors = False
        self.moving = False
        self._open()
        self.write()

    def lose_power(self) -> None:
        self.power_loss = True
        if self.moving:
            self.moving, self.between_floors = False, True
        self.target = None
        self.write()

    def restore_power(self) -> None:
        self.power_loss = False
        self.write()

    def set_fault(self, code: int) -> None:
        self.fault_code = code
        self.write()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.write()

    def visit(self, minutes: float) -> bool:
        """The firm's technician arrives for `minutes` (of simulated time); a lift whose
        visits are skipped sees nobody. True when the technician came."""
        if self.skip_visits:
            return False
        self.technician = True
        self.visit_left_s = minutes * 60.0
        self.write()
        return True

    def recall(self, on: bool) -> None:
        """The fire panel's recall line: home to the designated floor, doors open."""
        self.fire_recall = on
        if self.ignore_fire_return:
            return
        if on:
            self.mode = "fire_return"
            if not self.between_floors and not self.power_loss:
                self.target = self.designated_floor
                self.door_open = self.floor == self.designated_floor and self.door_open
                if self.floor == self.designated_floor:
                    self._open(hold=True)
        else:
            self.mode = "normal"
        self.write()

    # ---- the day's traffic --------------------------------------------------------------
    def step(self, dt: float, hour: float) -> None:
        """Advance `dt` seconds of simulated time at `hour` of the day."""
        if self.technician:
            self.visit_left_s -= dt
            if self.visit_left_s <= 0:
                self.technician = False
        if self.power_loss or self.between_floors:
            self.write()
            return
        if self.door_open:
            self.door_timer -= dt
            holding = self.fire_recall and not self.ignore_fire_return
            if self.door_timer <= 0 and not holding:
                self.door_open = False
                self.occupied = self.target is not None
        elif self.moving:
            self.running_s += dt
            self.travel += dt
            while self.travel >= FLOOR_TIME_S and self.target is not None:
                self.travel -= FLOOR_TIME_S
                self.floor += 1 if self.target > self.floor else -1
                if self.floor == self.target:
                    self.moving = False
                    self.trips += 1
                    self.target = None
                    self._open(hold=self.fire_recall and not self.ignore_fire_return)
                    break
        elif self.target is not None and self.target != self.floor:
            self.moving, self.travel = True, 0.0
        elif self.target == self.floor:
            self.target = None
            self._open()
        elif self.mode == "normal" and not self.technician:
            calls_per_s = _TRAFFIC[int(hour) % 24] / 60.0
            if self.rng.random() < calls_per_s * dt:
                self.target = self.rng.choice([f for f in range(self.lowest, self.highest + 1)
                                               if f != self.floor])
                self.occupied = self.rng.random() < 0.8
        self.write()

    def _open(self, hold: bool = False) -> None:
        self.door_open = True
        self.door_cycles += 1
        self.door_timer = float("inf") if hold else DOOR_TIME_S

    # ---- the box's registers ------------------------------------------------------------
    def write(self) -> None:
        s, v = self.spec, self.meter.values
        up = self.moving and self.target is not None and self.target > self.floor
        down = self.moving and self.target is not None and self.target < self.floor
        in_zone = not self.moving and not self.between_floors
        for flag, yes in ((s.moving, self.moving), (s.up, up), (s.down, down),
                          (s.door_open, self.door_open), (s.door_zone, in_zone),
                          (s.occupied, self.occupied), (s.technician, self.technician),
                          (s.power_loss, self.power_loss)):
            _set_flag(v, flag, yes)
        mode = "inspection" if self.technician and self.mode == "normal" else self.mode
        v[s.mode.metric] = float(next(code for code, m in s.mode.values.items() if m == mode))
        v[s.floor] = float(self.floor - s.floor_offset)
        v[s.faults.metric] = float(self.fault_code or s.faults.none)
        if s.speed:
            v[s.speed] = self.rated_speed_mps if self.moving else 0.0
        counters = {"trips": float(self.trips), "running_hours": self.running_s / 3600.0,
                    "door_cycles": float(self.door_cycles)}
        for name, metric in s.counters.items():
            reg = self.meter.profile.register(metric)
            value = counters[name]
            # What the register can hold at its scale: running hours in tenths or whole.
            v[metric] = round(value / reg.scale) * reg.scale


def lift(lift_id: str, profile: str, unit: int, **kwargs: object) -> SimulatedLift:
    loaded: Profile = load_profile(PROFILES / f"{profile}.yaml")
    return SimulatedLift(lift_id, SimulatedMeter(unit, loaded), **kwargs)  # type: ignore[arg-type]


class LiftFleet:
    """Lifts that move on their own: `run()` steps them once a (real) second, `speed` x
    faster in simulated time."""

    def __init__(self, lifts: Sequence[SimulatedLift], *, speed: float = 1.0,
                 start_hour: float = 8.0) -> None:
        self.lifts = {x.id: x for x in lifts}
        self.speed = speed
        self.hour = start_hour

    def step(self, seconds: float) -> None:
        self.hour = (self.hour + seconds / 3600.0) % 24
        for x in self.lifts.values():
            x.step(seconds, self.hour)

    async def run(self, every_s: float = 0.2) -> None:
        while True:
            await asyncio.sleep(every_s)
            self.step(every_s * self.speed)

    def recall(self, on: bool, lifts: Sequence[str] | None = None) -> None:
        for x in self.lifts.values():
            if lifts is None or x.id in lifts:
                x.recall(on)

    def servers(self) -> list[MeterServer]:
        """One box per lift, each its own Modbus TCP server (as on site)."""
        return [MeterServer([x.meter]) for x in self.lifts.values()]


async def _serve(args: argparse.Namespace) -> None:
    lifts = []
    for n, spec in enumerate(args.lifts):
        name, _, unit = spec.partition(":")
        lifts.append(lift(f"lift-{n + 1:02d}", name, int(unit or "1")))
    fleet = LiftFleet(lifts, speed=args.speed)
    async with MeterServer([x.meter for x in lifts], host=args.host, port=args.port) as server:
        print(f"lifts on {args.host}:{server.port}", flush=True)
        await fleet.run()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5030)
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument("lifts", nargs="+", help="profile:unit")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
