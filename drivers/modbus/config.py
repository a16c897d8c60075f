"""What the Modbus driver is told by the site file: where a unit is (its address), which
profile describes it, how often to poll it, and the quirks of its firmware (`workarounds`).

Pure pydantic, no pymodbus: the core validates the site file without the hardware stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, field_validator, model_validator

from drivers.modbus.status_config import LiftSettings, PanelSettings
from gateway.config_parts import DeviceCommands, Found, Model, Name, located

_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
_UNIT = re.compile(r"[0-9]{1,3}")
_MODBUS_FORMS = (
    "tcp://host:port/unit, rtu+tcp://host:port/unit or rtu:///dev/ttyX?baud=9600&unit=N"
)

Transport = Literal["tcp", "rtu", "rtu+tcp"]
_A = {"elevator": "an elevator", "fire_panel": "a fire panel"}


@dataclass(frozen=True, slots=True)
class ModbusEndpoint:
    """A parsed Modbus address: which link (TCP peer or RS-485 line) and which unit on it.

    `rtu+tcp` is RTU framing on a TCP socket: a serial server in front of an RS-485 line.
    """

    transport: Transport
    unit: int
    host: str = ""
    port: int = 502
    serial_port: str = ""
    baud: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1

    @property
    def link(self) -> str:
        """One supervisor owns each link; devices sharing it share one connection."""
        if self.transport == "rtu":
            return f"rtu://{self.serial_port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"

    @property
    def line_is_serial(self) -> bool:
        """RTU framing, whether on a serial port or a serial server: one unit at a time,
        with the inter-frame gap between transactions."""
        return self.transport in ("rtu", "rtu+tcp")


def _unit(text: str) -> int:
    if not _UNIT.fullmatch(text) or not 1 <= int(text) <= 247:
        raise ValueError(f"Modbus unit must be a number 1-247, not {text!r}")
    return int(text)


def parse_modbus_address(text: str) -> ModbusEndpoint:
    """Parse `tcp://host[:port]/unit`, `rtu+tcp://host[:port]/unit` or
    `rtu:///dev/ttyX?baud=B&unit=N[&parity=E&stopbits=1]`."""
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise ValueError("Modbus has no log-in: an address takes no user name or password")
    if parts.scheme in ("tcp", "rtu+tcp"):
        if parts.query or parts.fragment or not parts.hostname:
            raise ValueError(
                f"a Modbus TCP address is {parts.scheme}://host:port/unit, not {text!r}"
            )
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ValueError("Modbus TCP port must be 1-65535")
        transport: Transport = "tcp" if parts.scheme == "tcp" else "rtu+tcp"
        return ModbusEndpoint(
            transport, unit=_unit(parts.path.removeprefix("/")), host=parts.hostname,
            port=port or 502,
        )
    if parts.scheme == "rtu":
        if parts.netloc or not parts.path.startswith("/dev/") or parts.fragment:
            raise ValueError(
                f"a Modbus RTU address is rtu:///dev/ttyX?baud=9600&unit=N, not {text!r}"
            )
        params: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in params:
                raise ValueError(f"Modbus RTU option {key!r} given twice")
            params[key] = value
        unknown = sorted(set(params) - {"baud", "unit", "parity", "stopbits"})
        if unknown:
            raise ValueError(
                f"unknown Modbus RTU option {unknown[0]!r} (baud, unit, parity, stopbits)"
            )
        if "unit" not in params:
            raise ValueError("a Modbus RTU address needs unit=N")
        baud = params.get("baud", "9600")
        if not baud.isascii() or not baud.isdigit() or int(baud) not in _BAUDS:
            raise ValueError(f"baud must be one of {', '.join(map(str, _BAUDS))}")
        parity = params.get("parity", "N")
        if parity not in ("N", "E", "O"):
            raise ValueError("parity must be N, E or O")
        stopbits = params.get("stopbits", "1")
        if stopbits not in ("1", "2"):
            raise ValueError("stopbits must be 1 or 2")
        return ModbusEndpoint(
            "rtu",
            unit=_unit(params["unit"]),
            serial_port=parts.path,
            baud=int(baud),
            parity=parity,  # type: ignore[arg-type]  # checked against the Literal just above
            stopbits=int(stopbits),  # type: ignore[arg-type]
        )
    raise ValueError(f"a Modbus address is {_MODBUS_FORMS}, not {text!r}")


class Workarounds(Model):
    """Firmware quirks of one device, as data (Telegraf's `workarounds`), never code forks."""

    # Some firmware sends 32-bit values low word first, whatever its manual says.
    word_order: Literal["big", "little"] | None = None
    # Manuals that count registers from 1 ("40001") against firmware that counts from 0:
    # added to every address of the profile.
    address_offset: int = Field(default=0, ge=-1, le=1)
    # Meters that answer "illegal address" or garbage past a block of this many registers.
    max_block: int = Field(default=125, ge=1, le=125)
    # Only function 06 (one register at a time), never 16.
    no_multi_register_write: bool = False
    # Serial servers that drop the first request sent right after a connect.
    pause_after_connect_s: float = Field(default=0.0, ge=0, le=10)
    # Read registers that lie this far apart in one request rather than two: a request
    # costs a round trip, a few more registers in it cost almost nothing. None: the
    # profile's `gap_bridge` (with its fallback); 0: never.
    gap_bridge: int | None = Field(default=None, ge=0, le=124)


class ModbusDevice(Model):
    driver: Literal["modbus"]
    id: Name
    kind: Literal["energy_meter", "water_meter", "gas_meter", "elevator", "fire_panel",
                  "io_module", "temperature_sensor"]
    zone: str
    address: str
    profile: str = Field(min_length=1)
    poll_s: float = Field(default=5.0, ge=0.1, le=3600)
    vendor: str | None = None
    enabled: bool = True
    # The request timeout for this unit; a silent unit backs off, the line goes on.
    timeout_s: float = Field(default=1.0, gt=0, le=30)
    workarounds: Workarounds = Field(default_factory=Workarounds)
    # Registers a profile gives two addresses for (CHINT DTSU666 firmware): which one this
    # meter uses, or "probe" to find out at the first poll.
    variant: Literal["probe", "primary", "alternate"] = "probe"
    # The largest current its breaker passes (A): counters jumping beyond what it allows
    # are flagged, never summed. None: the profile's own bound.
    breaker_a: float | None = Field(default=None, gt=0, le=10_000)
    building: str | None = None
    system: str | None = None  # lighting, ac_pumps, water_main, gas, ...
    # What the unit may be told (a relay coil, a set-point): allow-listed, audited.
    commands: DeviceCommands | None = None
    # Elevators (kind: elevator) and fire panels (kind: fire_panel): drivers.modbus.status_config.
    lift: LiftSettings | None = None
    panel: PanelSettings | None = None

    @model_validator(mode="after")
    def _observed_only(self) -> ModbusDevice:
        found: list[Found] = []
        if self.kind in ("elevator", "fire_panel") and self.commands is not None:
            # GB/T 42616: the monitoring terminal never controls the lift; fire recall is
            # wired in the panel. Both are observed, never written.
            found.append((("commands",), f"{_A[self.kind]} is observed, never"
                          " commanded: remove commands", None))
        if self.lift is not None and self.kind != "elevator":
            found.append((("lift",), "lift settings belong to kind: elevator", None))
        if self.panel is not None and self.kind != "fire_panel":
            found.append((("panel",), "panel settings belong to kind: fire_panel", None))
        if self.kind == "elevator" and self.enabled and self.lift is None:
            found.append((("lift",), "an elevator needs its lift settings (firm, floors)", None))
        if self.kind == "fire_panel" and self.enabled and self.panel is None:
            found.append((("panel",), "a fire panel needs its points", None))
        if found:
            raise located(found)
        return self

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        parse_modbus_address(value)
        return value

    @property
    def endpoint(self) -> ModbusEndpoint:
        return parse_modbus_address(self.address)


def redirected(device: ModbusDevice, host: str, port: int) -> ModbusDevice:
    """The same unit served elsewhere on TCP (a simulator on loopback standing in for
    its link): RTU framing stays RTU framing, now on a TCP socket."""
    end = device.endpoint
    scheme = "rtu+tcp" if end.line_is_serial else "tcp"
    return device.model_copy(update={"address": f"{scheme}://{host}:{port}/{end.unit}"})
