"""Status words as data: how an elevator monitoring box or a fire panel's Modbus gateway
says what its equipment is doing (bit flags, enumerations, per-firmware fault tables),
and the pure decoders that turn one poll's register values into a typed state.

A profile's optional `status:` section is one of the two models here. The decoders do no
I/O; what they cannot make sense of (an unknown fault code, an impossible floor, bits that
contradict each other) is returned as a bounded problem name beside the state, never
dropped silently: an unknown fault code is kept and shown as unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ServiceMode = Literal["normal", "inspection", "fire_return", "firefighter", "out_of_service"]
# GB/T 26875.3 component status word: the names of its bits.
PointBit = Literal["test", "fire", "fault", "isolated", "supervisory", "started", "feedback",
                   "delay", "power_fault"]
PanelBit = Literal["main_power_fault", "backup_power_fault", "bus_fault", "manual"]

# Problems a decoder reports (bounded: they become metric labels through Sink.rejected).
UNKNOWN_FAULT = "unknown_fault_code"
IMPOSSIBLE_FLOOR = "impossible_floor"
CONTRADICTORY = "contradictory_status"
UNKNOWN_MODE = "unknown_service_mode"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Flag(_Model):
    """One yes/no fact read from a register: one bit of it, or a set of its values."""

    metric: str
    bit: int | None = Field(default=None, ge=0, le=15)
    when: list[int] | None = None  # the register's values that mean yes
    invert: bool = False  # the bit or value says the opposite (e.g. "power ok")

    @model_validator(mode="after")
    def _one_way(self) -> Flag:
        if (self.bit is None) == (self.when is None):
            raise ValueError(f"{self.metric}: give a bit or the values (when), exactly one")
        return self

    def read(self, values: Mapping[str, float]) -> bool | None:
        raw = values.get(self.metric)
        if raw is None:
            return None
        word = int(raw)
        yes = bool(word >> self.bit & 1) if self.bit is not None else word in (self.when or ())
        return yes != self.invert


class ModeMap(_Model):
    metric: str
    values: dict[int, ServiceMode] = Field(min_length=1)


class FaultTable(_Model):
    """The fault code register and what each code means, per firmware of the box: the
    same box family ships different tables in different firmware versions."""

    metric: str
    none: int = 0  # the code that means no fault
    firmware: dict[str, dict[int, str]] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_default(self) -> FaultTable:
        if "default" not in self.firmware:
            raise ValueError("firmware needs a 'default' table")
        return self


class ElevatorStatus(_Model):
    """Where an elevator box says each part of the lift's state."""

    kind: Literal["elevator"]
    moving: Flag
    up: Flag
    down: Flag
    door_open: Flag  # not fully closed
    door_zone: Flag  # the car is within a landing's door zone
    occupied: Flag  # load weighing or car presence sensor
    technician: Flag  # the maintenance key or a technician's card at the box
    power_loss: Flag
    mode: ModeMap
    floor: str  # the metric holding the floor number
    floor_offset: int = 0  # added to the register (boxes counting floors from 0 or 1)
    speed: str | None = None  # the metric holding the car speed (m/s)
    faults: FaultTable
    counters: dict[Literal["trips", "running_hours", "door_cycles"], str] = Field(
        default_factory=dict)  # counter -> metric


class PanelStatus(_Model):
    """Where a fire panel's Modbus gateway puts the panel word and the point words."""

    kind: Literal["fire_panel"]
    panel: str  # the metric of the panel status word
    panel_bits: dict[int, PanelBit] = Field(min_length=1)
    points: str  # the metric prefix of the point words: points_001, points_002, ...
    point_bits: dict[int, PointBit] = Field(min_length=1)

    @model_validator(mode="after")
    def _fire_bit(self) -> PanelStatus:
        if "fire" not in self.point_bits.values():
            raise ValueError("point_bits must name the fire bit")
        for bits in (self.panel_bits, self.point_bits):
            bad = [b for b in bits if not 0 <= b <= 15]
            if bad:
                raise ValueError(f"bit {bad[0]} is outside a 16-bit word")
        return self


StatusSpec = ElevatorStatus | PanelStatus


# ---- decoded states ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiftState:
    """What one elevator is doing, as one poll said it."""

    moving: bool
    direction: Literal["up", "down", "none", "unknown"]
    floor: int | None  # None: the box said a floor this lift does not have
    door_open: bool
    door_zone: bool
    occupied: bool
    technician: bool
    power_loss: bool
    mode: str  # a ServiceMode, or "unknown"
    fault_code: int
    fault: str  # "" (no fault), the table's text, or "unknown (code N)"

    @property
    def at_landing_open(self) -> bool:
        return not self.moving and self.door_zone and self.door_open

    def to_data(self) -> dict[str, object]:
        return {
            "moving": self.moving, "direction": self.direction, "floor": self.floor,
            "door_open": self.door_open, "door_zone": self.door_zone,
            "occupied": self.occupied, "technician": self.technician,
            "power_loss": self.power_loss, "mode": self.mode,
            "fault_code": self.fault_code, "fault": self.fault,
        }  # fmt: skip

    @property
    def available(self) -> bool:
        """In service for passengers: normal mode, powered, no fault."""
        return self.mode == "normal" and not self.power_loss and self.fault_code == 0


@dataclass(frozen=True, slots=True)
class Decoded:
    state: LiftState
    problems: tuple[tuple[str, str], ...] = ()  # (bounded reason, detail)


def decode_lift(spec: ElevatorStatus, values: Mapping[str, float], *, firmware: str = "default",
                lowest: int | None = None, highest: int | None = None) -> Decoded | None:
    """The lift's state from one poll's values; None when the poll lacked a status register."""
    flags = {name: getattr(spec, name).read(values) for name in
             ("moving", "up", "down", "door_open", "door_zone", "occupied", "technician",
              "power_loss")}
    if any(v is None for v in flags.values()):
        return None
    raw_mode, raw_floor, raw_fault = (values.get(spec.mode.metric), values.get(spec.floor),
                                      values.get(spec.faults.metric))
    if raw_mode is None or raw_floor is None or raw_fault is None:
        return None
    problems: list[tuple[str, str]] = []
    up, down, moving = bool(flags["up"]), bool(flags["down"]), bool(flags["moving"])
    direction: Literal["up", "down", "none", "unknown"]
    if up and down:
        # Both at once cannot be: the rest of the word is still believed (an entrapment
        # needs no direction), the direction is not.
        direction = "unknown"
        problems.append((CONTRADICTORY, "up and down both set"))
    elif up:
        direction = "up"
    elif down:
        direction = "down"
    else:
        direction = "none"
    said = int(raw_floor) + spec.floor_offset
    floor: int | None = said
    if (lowest is not None and said < lowest) or (highest is not None and said > highest):
        problems.append((IMPOSSIBLE_FLOOR, f"floor {said} outside {lowest}..{highest}"))
        floor = None
    mode = spec.mode.values.get(int(raw_mode))
    if mode is None:
        problems.append((UNKNOWN_MODE, f"service mode code {int(raw_mode)}"))
    code = int(raw_fault)
    fault = ""
    if code != spec.faults.none:
        table = spec.faults.firmware.get(firmware, spec.faults.firmware["default"])
        text = table.get(code)
        if text is None:
            # Kept and shown: a code this table lacks is still a fault of the lift.
            text = f"unknown (code {code})"
            problems.append((UNKNOWN_FAULT, f"fault code {code} (firmware {firmware})"))
        fault = text
    else:
        code = 0
    state = LiftState(
        moving=moving, direction=direction, floor=floor, door_open=bool(flags["door_open"]),
        door_zone=bool(flags["door_zone"]), occupied=bool(flags["occupied"]),
        technician=bool(flags["technician"]), power_loss=bool(flags["power_loss"]),
        mode=mode or "unknown", fault_code=code, fault=fault,
    )
    return Decoded(state, tuple(problems))


@dataclass(frozen=True, slots=True)
class PanelDecoded:
    panel: frozenset[str]  # panel bits set
    points: dict[int, frozenset[str]]  # point number -> bits set
    problems: tuple[tuple[str, str], ...] = field(default=())


def bits_of(word: int, names: Mapping[int, str]) -> frozenset[str]:
    return frozenset(name for bit, name in names.items() if word >> bit & 1)


def decode_panel(spec: PanelStatus, values: Mapping[str, float]) -> PanelDecoded | None:
    """The panel's and every point's bits; None when the poll lacked the panel word."""
    raw = values.get(spec.panel)
    if raw is None:
        return None
    prefix = spec.points + "_"
    points: dict[int, frozenset[str]] = {}
    problems: list[tuple[str, str]] = []
    for metric, value in values.items():
        if metric.startswith(prefix):
            number = int(metric[len(prefix):])
            bits = bits_of(int(value), spec.point_bits)
            if "fire" in bits and "isolated" in bits:
                # An isolated point should say nothing; one that says fire is believed
                # (a fire is never dropped) and the contradiction is counted.
                problems.append((CONTRADICTORY, f"point {number}: fire while isolated"))
            points[number] = bits
    return PanelDecoded(bits_of(int(raw), spec.panel_bits), points, tuple(problems))
