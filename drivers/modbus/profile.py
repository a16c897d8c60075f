"""Device profiles as data: what a meter model is (its registers, types, scale, plausible
ranges, code tables), loaded from `config/profiles/*.yaml` and validated at load.

A mistake in a profile is reported as `file:line key: message`, like the site file.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from drivers.modbus.status import ElevatorStatus, PanelStatus
from gateway.errors import ConfigError

RegisterType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bits"]
Order = Literal["big", "little"]

# Registers each type takes (bits: one coil on FC01/02, one 16-bit field on FC03/04).
WIDTH: dict[str, int] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4, "bits": 1,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Plausible(_Model):
    """The physically possible band; a value outside it is flagged and never summed."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> Plausible:
        if self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self


class Register(_Model):
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    function: Literal[1, 2, 3, 4]
    address: int = Field(ge=0, le=0xFFFF)
    type: RegisterType
    word_order: Order | None = None  # None: the profile's
    byte_order: Order = "big"
    scale: float = 1.0
    unit: str = ""
    # gauge: a value now (power, flow); counter: a total that only grows (kWh, m3).
    kind: Literal["gauge", "counter"] = "gauge"
    plausible: Plausible | None = None
    # Counters: the largest rise per hour the installation can produce at full load
    # (kWh/h = kW); a bigger jump is flagged, never summed. Scaled by a device's breaker.
    max_rise_per_h: float | None = Field(default=None, gt=0)
    # For `bits` and enumerations: value (or bit number) -> meaning.
    codes: dict[int, str] | None = None
    # The same register at another address on other firmware (probed, or set per device).
    alternate_address: int | None = Field(default=None, ge=0, le=0xFFFF)

    @property
    def width(self) -> int:
        return WIDTH[self.type]

    @model_validator(mode="after")
    def _consistent(self) -> Register:
        if self.function in (1, 2) and self.type != "bits":
            raise ValueError(f"function {self.function:02d} reads bits: type must be bits")
        if self.kind == "counter" and self.type == "bits":
            raise ValueError("a counter must be a number, not bits")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self


class Profile(_Model):
    profile: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""
    word_order: Order = "big"
    registers: list[Register] = Field(min_length=1)
    # Read registers this far apart in one request: set where the model's map is one table
    # whose holes are its own other parameters, so a read across them answers. A unit
    # that refuses one ("illegal address") falls back to the plan without it at its first
    # poll; a device's `workarounds.gap_bridge` overrides this.
    gap_bridge: int = Field(default=0, ge=0, le=124)
    # Elevator boxes and fire panels: how their status words read (drivers.modbus.status).
    status: ElevatorStatus | PanelStatus | None = Field(default=None, discriminator="kind")

    @model_validator(mode="before")
    @classmethod
    def _repeat(cls, data: Any) -> Any:
        """`repeat: N` on a register stands for N registers at consecutive addresses,
        named metric_001 to metric_N (a fire panel's point words)."""
        if not isinstance(data, dict) or not isinstance(data.get("registers"), list):
            return data
        out: list[Any] = []
        for reg in data["registers"]:
            if not isinstance(reg, dict) or "repeat" not in reg:
                out.append(reg)
                continue
            count = reg["repeat"]
            if not isinstance(count, int) or not 1 <= count <= 999:
                raise ValueError(f"repeat must be a whole number 1-999, not {count!r}")
            rest = {k: v for k, v in reg.items() if k != "repeat"}
            step = WIDTH.get(str(rest.get("type")), 1)
            for n in range(count):
                out.append({**rest, "metric": f"{rest.get('metric')}_{n + 1:03d}",
                            "address": int(rest.get("address", 0)) + n * step})
        return {**data, "registers": out}

    @model_validator(mode="after")
    def _status_names_registers(self) -> Profile:
        if self.status is None:
            return self
        known = {r.metric for r in self.registers}
        if isinstance(self.status, ElevatorStatus):
            s = self.status
            named = [s.moving.metric, s.up.metric, s.down.metric, s.door_open.metric,
                     s.door_zone.metric, s.occupied.metric, s.technician.metric,
                     s.power_loss.metric, s.mode.metric, s.floor, s.faults.metric,
                     *([s.speed] if s.speed else []), *s.counters.values()]
        else:
            named = [self.status.panel]
            if not any(m.startswith(self.status.points + "_") for m in known):
                raise ValueError(f"status.points: no registers named {self.status.points}_NNN")
        missing = sorted({m for m in named if m not in known})
        if missing:
            raise ValueError(f"status names registers the profile lacks: {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _no_overlap(self) -> Profile:
        metrics: dict[str, int] = {}
        for i, reg in enumerate(self.registers):
            if reg.metric in metrics:
                raise ValueError(
                    f"registers[{i}]: metric {reg.metric!r} is already registers"
                    f"[{metrics[reg.metric]}]"
                )
            metrics[reg.metric] = i
        # FC03 and FC04 are separate tables, as are coils and discrete inputs.
        spans: list[tuple[int, int, int, int, str]] = []
        for i, reg in enumerate(self.registers):
            for address in (reg.address, reg.alternate_address):
                if address is not None:
                    if address + reg.width > 0x10000:
                        raise ValueError(f"registers[{i}]: {reg.metric} runs past 0xFFFF")
                    spans.append((reg.function, address, address + reg.width, i, reg.metric))
        spans.sort()
        for a, b in itertools.pairwise(spans):
            if a[0] == b[0] and b[1] < a[2]:
                raise ValueError(
                    f"registers[{b[3]}]: {b[4]} at FC{b[0]:02d} 0x{b[1]:04X} overlaps "
                    f"registers[{a[3]}] {a[4]} (0x{a[1]:04X}-0x{a[2] - 1:04X})"
                )
        return self

    def register(self, metric: str) -> Register:
        for reg in self.registers:
            if reg.metric == metric:
                return reg
        raise KeyError(metric)

    def word_order_of(self, reg: Register) -> Order:
        return reg.word_order or self.word_order


class ProfileError(ConfigError):
    """A profile file is invalid; the message names the file, line and key."""


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    try:
        tree = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProfileError(f"{path}:0 (file): unknown profile {path.stem!r}") from None
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise ProfileError(f"{path}:0 (file): cannot read the profile: {exc}") from None
    try:
        return Profile.model_validate(_plain(tree))
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            loc = tuple(error["loc"])
            if loc[:1] == ("status",) and loc[1:2] in (("elevator",), ("fire_panel",)):
                loc = loc[:1] + loc[2:]  # the tag pydantic puts into the path
            message = str(error["msg"]).removeprefix("Value error, ")
            if message.startswith("registers["):
                index = int(message[len("registers["):message.index("]")])
                loc = ("registers", index)
                message = message[message.index("]: ") + 3:]
            key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc)
            key = key.replace(".[", "[") or "(file)"
            lines.append(f"{path}:{_line(tree, loc)} {key}: {message}")
        raise ProfileError("\n".join(lines)) from None


def _plain(node: Any) -> Any:
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def _line(tree: Any, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest part of `loc` found in the YAML tree."""
    line = 1
    node = tree
    for part in loc:
        if isinstance(node, CommentedMap) and part not in node and str(part).isdigit():
            part = int(part)  # a code table's key: an int in the file, a str in the path
        in_map = isinstance(node, CommentedMap) and part in node
        in_seq = isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node)
        if in_map or in_seq:
            position = node.lc.data.get(part)
            if position:
                line = position[0] + 1
            node = node[part]
        else:
            break
    return line


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """Every profile in a folder, by name; the first bad file raises."""
    out: dict[str, Profile] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        if path.stem == "heat-detector":
            continue  # an MQTT profile (drivers.mqtt)
        profile = load_profile(path)
        if profile.profile != path.stem:
            raise ProfileError(f"{path}:1 profile: {profile.profile!r} must match the file name")
        out[profile.profile] = profile
    return out
