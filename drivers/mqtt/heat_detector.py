"""Heat detector codec: JSON report -> Readings, Heartbeat and flag-change Events. Pure."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from drivers.mqtt.profile import read_profile
from drivers.payloads import parse_json
from gateway.errors import PayloadRejected
from gateway.events import Event, Heartbeat, Reading, Severity


@dataclass(frozen=True, slots=True)
class HeatDetectorProfile:
    max_payload_bytes: int
    temp_min: float
    temp_max: float
    battery_min: int
    battery_max: int
    faults: dict[str, str] = field(default_factory=dict)


def load_profile(path: Path) -> HeatDetectorProfile:
    """The profile in `path`, checked by its typed model (a `ProfileError` if unsound)."""
    checked = read_profile(path)
    return HeatDetectorProfile(
        max_payload_bytes=checked.max_payload_bytes,
        temp_min=checked.temperature_c.min,
        temp_max=checked.temperature_c.max,
        battery_min=int(checked.battery_pct.min),
        battery_max=int(checked.battery_pct.max),
        faults=dict(checked.faults),
    )


class Report(NamedTuple):
    """One checked report. A named tuple: one is built per report, and a frozen
    dataclass sets each field through `object.__setattr__`."""

    seq: int
    ts: float | None
    temp_c: float
    alarm: bool
    fault: str | None
    battery_pct: int


# A detector reporting faster than this (a test rig, a flood) proves it is alive once per
# this, not with every report: a Heartbeat is a third of the items a report makes.
PROOF_EVERY_S = 1.0


@dataclass(slots=True)
class DetectorMemory:
    """What the codec remembers of one detector, to turn flags into change events."""

    alarm: bool = False
    fault: str | None = None
    proved_at: float = -math.inf  # when its last proof of life (a Heartbeat) was sent on


def _number(doc: dict[str, Any], key: str) -> float:
    value: Any = doc.get(key)
    kind = type(value)  # exact types first: this runs four times a report
    if kind is float:
        number: float = value
        # Python's JSON reads NaN and Infinity; x - x is 0.0 only for a finite x.
        if number - number == 0.0:
            return number
        raise PayloadRejected("out_of_range", f"{key} is not finite")
    if kind is int:
        try:
            return float(value)  # an int beyond a double's range raises OverflowError
        except OverflowError:
            raise PayloadRejected("out_of_range", f"{key} beyond a float") from None
    if value is None:
        raise PayloadRejected("missing_field", key)
    # bool is an int in Python; a detector that sends true for a temperature is broken.
    raise PayloadRejected("wrong_type", f"{key} is {kind.__name__}")


def decode_report(payload: bytes, profile: HeatDetectorProfile) -> Report:
    """Parse and check one report; raises PayloadRejected with a bounded reason."""
    if len(payload) > profile.max_payload_bytes:
        raise PayloadRejected("oversize", f"{len(payload)} bytes")
    try:
        doc = parse_json(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        # ValueError covers an integer beyond Python's digit limit as well.
        raise PayloadRejected("bad_json", str(exc)[:80]) from None
    except RecursionError:
        raise PayloadRejected("bad_json", "nested too deeply") from None
    if not isinstance(doc, dict):
        raise PayloadRejected("not_object", type(doc).__name__)
    seq = _number(doc, "seq")
    if seq != int(seq) or seq < 0 or seq >= 2**63:
        raise PayloadRejected("out_of_range", f"seq {seq!r}")
    temp = _number(doc, "temp_c")
    if not profile.temp_min <= temp <= profile.temp_max:
        raise PayloadRejected("out_of_range", f"temp_c {temp!r}")
    battery = _number(doc, "battery_pct")
    if not profile.battery_min <= battery <= profile.battery_max:
        raise PayloadRejected("out_of_range", f"battery_pct {battery!r}")
    alarm = doc.get("alarm")
    if not isinstance(alarm, bool):
        raise PayloadRejected("wrong_type" if alarm is not None else "missing_field", "alarm")
    fault = doc.get("fault")
    if fault is not None:
        if not isinstance(fault, str):
            raise PayloadRejected("wrong_type", "fault")
        if fault not in profile.faults:
            raise PayloadRejected("unknown_fault", fault[:40])
    ts_raw = doc.get("ts")
    ts: float | None = None
    if ts_raw is not None:
        ts = _number(doc, "ts")
    return Report(int(seq), ts, temp, alarm, fault, int(battery))


def normalise(
    source: str,
    zone: str,
    report: Report,
    memory: DetectorMemory,
    now: float,
    next_seq: Any,
    profile: HeatDetectorProfile,
) -> tuple[list[Reading | Heartbeat], list[Event]]:
    """Turn a valid report into telemetry plus events for changed flags; updates `memory`."""
    telemetry: list[Reading | Heartbeat] = [
        Reading(source, "temperature", report.temp_c, "celsius", now, report.ts),
        Reading(source, "battery", float(report.battery_pct), "percent", now, report.ts),
    ]
    if now - memory.proved_at >= PROOF_EVERY_S:
        # The readings already count as heard for the silence rules; the Heartbeat is
        # what moves the device's state back to up, and once a second is enough.
        telemetry.append(Heartbeat(source, now))
        memory.proved_at = now
    if report.alarm == memory.alarm and report.fault == memory.fault:
        return telemetry, []  # no flag changed: the usual report
    events: list[Event] = []
    data = {"temp_c": report.temp_c, "device_seq": report.seq}
    if report.alarm != memory.alarm:
        kind, severity = (
            ("fire.detector.alarm", Severity.CRITICAL)
            if report.alarm
            else ("fire.detector.alarm_cleared", Severity.INFO)
        )
        events.append(
            Event(kind, source, next_seq(source), now, severity, zone, report.ts, dict(data))
        )
        memory.alarm = report.alarm
    if report.fault != memory.fault:
        if report.fault is not None:
            fault_data = {**data, "code": report.fault, "meaning": profile.faults[report.fault]}
            events.append(
                Event("fire.detector.fault", source, next_seq(source), now, Severity.MAJOR,
                      zone, report.ts, fault_data)
            )
        else:
            events.append(
                Event("fire.detector.fault_cleared", source, next_seq(source), now,
                      Severity.INFO, zone, report.ts, {**data, "code": memory.fault})
            )
        memory.fault = report.fault
    return telemetry, events


class HeatDetectorCodec:
    """The heat-detector family behind the MQTT driver's codec seam (drivers.mqtt.codec)."""

    family = "heat_detector"
    told_kind = ""

    def __init__(self, profile: HeatDetectorProfile) -> None:
        self.profile = profile

    def decode(self, payload: bytes) -> Report:
        return decode_report(payload, self.profile)

    def seq_of(self, report: Report) -> int | None:
        return report.seq

    def memory(self, known: Mapping[str, Any]) -> DetectorMemory:
        fault = known.get("fault")
        return DetectorMemory(alarm=bool(known.get("alarm", False)),
                              fault=fault if isinstance(fault, str) else None)

    def copy(self, memory: DetectorMemory) -> DetectorMemory:
        return DetectorMemory(memory.alarm, memory.fault, memory.proved_at)

    def repeat(self, report: Report, memory: DetectorMemory) -> bool:
        return False  # a detector's repeats are known by its sequence number

    def command(self, topic: str, action: str, why: str) -> tuple[str, bytes] | None:
        return None  # a detector takes no commands

    def normalise(
        self, source: str, zone: str, report: Report, memory: DetectorMemory, now: float,
        next_seq: Callable[[str], int],
    ) -> tuple[list[Reading | Heartbeat], list[Event]]:
        return normalise(source, zone, report, memory, now, next_seq, self.profile)
