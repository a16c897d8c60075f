"""State changes of elevators and fire panel points, from their decoded status words:
one event per change (never one per poll), visit evidence from the technician signal,
the lift's availability as a reading, and each decoding problem counted once when it
appears (not on every poll while it lasts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.modbus.config import ModbusDevice
from drivers.modbus.status import (
    ElevatorStatus,
    LiftState,
    PanelStatus,
    StatusSpec,
    decode_lift,
    decode_panel,
)
from gateway.contract import Sink
from gateway.events import Event, Heartbeat, Reading, Severity

DRIVER = "modbus"
_MAJOR_POINT_BITS = frozenset({"fault", "isolated", "supervisory", "power_fault"})
_MAJOR_PANEL_BITS = frozenset({"main_power_fault", "backup_power_fault", "bus_fault"})


def point_severity(bits: frozenset[str]) -> Severity:
    """Fire is critical; fault, isolation, supervisory and power faults are major."""
    if "fire" in bits:
        return Severity.CRITICAL
    if bits & _MAJOR_POINT_BITS:
        return Severity.MAJOR
    return Severity.INFO


@dataclass
class _Memory:
    lift: LiftState | None = None
    visit_started: float | None = None
    panel: frozenset[str] | None = None
    points: dict[int, frozenset[str]] = field(default_factory=dict)
    problems: frozenset[str] = frozenset()


class StatusEvents:
    """Kept by the driver across link restarts: what each unit said last."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._memory: dict[str, _Memory] = {}

    def update(self, device: ModbusDevice, spec: StatusSpec, values: dict[str, float],
               now: float) -> list[Event]:
        memory = self._memory.setdefault(device.id, _Memory())
        if isinstance(spec, ElevatorStatus):
            return self._lift(device, spec, values, now, memory)
        return self._panel(device, spec, values, now, memory)

    def _problems(self, device: ModbusDevice, memory: _Memory,
                  problems: tuple[tuple[str, str], ...]) -> None:
        now_set = frozenset(f"{reason}:{detail}" for reason, detail in problems)
        for reason, detail in problems:
            if f"{reason}:{detail}" not in memory.problems:
                self._sink.rejected(DRIVER, reason, detail, device.id)
        memory.problems = now_set

    def _event(self, kind: str, source: str, zone: str, severity: Severity, now: float,
               data: dict[str, object]) -> Event:
        return Event(kind, source, self._sink.next_seq(source), now, severity, zone, data=data)

    def _lift(self, device: ModbusDevice, spec: ElevatorStatus, values: dict[str, float],
              now: float, memory: _Memory) -> list[Event]:
        lift = device.lift
        decoded = decode_lift(
            spec, values, firmware=lift.firmware if lift else "default",
            lowest=lift.floors.lowest if lift else None,
            highest=lift.floors.highest if lift else None)
        if decoded is None:
            return []
        self._problems(device, memory, decoded.problems)
        state = decoded.state
        self._sink.telemetry(Reading(device.id, "in_service", 1.0 if state.available else 0.0,
                                     "", now))
        before = memory.lift
        if before == state:
            return []
        memory.lift = state
        out: list[Event] = []
        data = state.to_data()
        if before is not None:
            old = before.to_data()
            data["changed"] = sorted(k for k, v in data.items() if old.get(k) != v)
        else:
            data["changed"] = ["first"]
        out.append(self._event("elevator.status", device.id, device.zone, Severity.INFO, now,
                               data))
        was_on_site = before is not None and before.technician
        if state.technician and not was_on_site:
            memory.visit_started = now
            out.append(self._event("elevator.visit.started", device.id, device.zone,
                                   Severity.INFO, now, {"resumed": before is None}))
        elif was_on_site and not state.technician:
            started = memory.visit_started
            memory.visit_started = None
            visit: dict[str, object] = {"ended_at": now}
            if started is not None:
                visit |= {"started_at": started, "duration_s": round(now - started, 1)}
            out.append(self._event("elevator.visit.ended", device.id, device.zone,
                                   Severity.INFO, now, visit))
        return out

    def _panel(self, device: ModbusDevice, spec: PanelStatus, values: dict[str, float],
               now: float, memory: _Memory) -> list[Event]:
        decoded = decode_panel(spec, values)
        if decoded is None:
            return []
        self._sink.telemetry(Heartbeat(device.id, now))  # its words are events only
        points = {p.point: p for p in device.panel.points} if device.panel else {}
        problems = list(decoded.problems)
        out: list[Event] = []
        if decoded.panel != memory.panel:
            memory.panel = decoded.panel
            severity = Severity.MAJOR if decoded.panel & _MAJOR_PANEL_BITS else Severity.INFO
            out.append(self._event("fire.panel.status", device.id, device.zone, severity, now,
                                   {"bits": sorted(decoded.panel)}))
        for number, bits in sorted(decoded.points.items()):
            point = points.get(number)
            if point is None:
                if bits:
                    problems.append(("unknown_point", f"point {number} is not in the site file"))
                continue
            if memory.points.get(number) == bits:
                continue
            memory.points[number] = bits
            out.append(self._event(
                "fire.point.status", point.id, point.zone, point_severity(bits), now,
                {"panel": device.id, "point": number, "kind": point.kind,
                 "name": point.name or point.id, "bits": sorted(bits)}))
        self._problems(device, memory, tuple(problems))
        return out
