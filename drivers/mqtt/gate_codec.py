"""The gate controller family behind the MQTT driver's codec seam: what a controller
publishes on `<topic>/event`, decoded, and the commands it takes on `<topic>/command`.
Pure: from one payload to a checked report (or `PayloadRejected` with a bounded reason),
and from a report to the gateway's items.

    {"type": "plate", "plate": "湘A12345", "plate_id": "c-17", "offline": false,
     "confidence": 91, "province_confidence": 88, "pictures": []}
    {"type": "state", "state": "open" | "closed"}
    {"type": "loop"}
    {"type": "heartbeat"}

A controller sends no sequence number: its reports stand in the order the link brings
them. A plate id it sent already (a repeat, a replay of the same read) is recognised from
the codec's memory, which the MQTT driver keeps in step with the store's commits: a read
whose commit failed is judged new again when the broker sends it once more.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from drivers.payloads import parse_json
from gateway.errors import PayloadRejected
from gateway.events import Event, Heartbeat, Reading, Severity
from gateway.vehicles.plates import classify, normalise

MAX_PAYLOAD = 16 * 1024  # a read without pictures (a bridge sends those over HTTP)
# A province character given less than this confidence (0-100) may be forgiven.
PROVINCE_LOW_CONFIDENCE = 75
# Plate ids remembered per controller: a repeat comes within seconds, not thousands later.
SEEN_PER_GATE = 1024
# The rules' actions, as the controller names them.
ACTIONS = {"open": "open", "close": "close", "hold_open": "alwaysOpen", "release": "normal"}
EVENT_TOPIC = "/event"
COMMAND_TOPIC = "/command"


class ControllerReport(NamedTuple):
    type: str  # plate | state | loop | heartbeat
    state: str | None = None
    plate: str = ""
    raw: str = ""
    plate_id: str = ""
    offline: bool = False
    confidence: float | None = None
    province_low: bool = False


Seen = OrderedDict[str, None]  # a controller's memory: the plate ids it sent lately


def _reject(reason: str, detail: str) -> PayloadRejected:
    return PayloadRejected(reason, detail)


def decode(payload: bytes) -> ControllerReport:
    if len(payload) > MAX_PAYLOAD:
        raise _reject("too_large", f"{len(payload)} bytes")
    try:
        doc = parse_json(payload)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _reject("malformed_json", str(exc)[:80]) from None
    if not isinstance(doc, dict) or doc.get("type") not in ("plate", "state", "loop",
                                                            "heartbeat"):
        raise _reject("bad_payload", "no type of plate, state, loop or heartbeat")
    kind: str = doc["type"]
    if kind in ("heartbeat", "loop"):
        return ControllerReport(kind)
    if kind == "state":
        state = doc.get("state")
        if state not in ("open", "closed"):
            raise _reject("bad_payload", "state is neither open nor closed")
        return ControllerReport(kind, state=state)
    raw = doc.get("plate")
    plate_id = doc.get("plate_id")
    if not isinstance(raw, str) or len(raw) > 16:
        raise _reject("bad_payload", "plate is missing or not short text")
    if not isinstance(plate_id, str | int) or isinstance(plate_id, bool) or len(str(plate_id)) > 64:
        raise _reject("bad_payload", "plate_id is missing")
    offline = doc.get("offline", False)
    if not isinstance(offline, bool):
        raise _reject("bad_payload", "offline is not true or false")
    province = doc.get("province_confidence")
    low = isinstance(province, int | float) and not isinstance(province, bool) and (
        province < PROVINCE_LOW_CONFIDENCE)
    confidence: Any = doc.get("confidence")
    if not isinstance(confidence, int | float) or isinstance(confidence, bool) or (
            isinstance(confidence, float) and confidence - confidence != 0.0):
        confidence = None  # absent, or not a finite number: no confidence given
    return ControllerReport(kind, plate=normalise(raw), raw=raw, plate_id=str(plate_id),
                            offline=offline, confidence=confidence, province_low=low)


def items(source: str, zone: str, report: ControllerReport, now: float,
          next_seq: Callable[[str], int]) -> list[Event | Heartbeat]:
    kind = report.type
    if kind == "heartbeat":
        return [Heartbeat(source, now)]
    if kind == "loop":
        return [Event("gate.loop", source, seq=next_seq(source), time=now, zone=zone,
                      data={"loop": "passed", "reported": "controller"})]
    if kind == "state":
        return [Event("gate.state", source, seq=next_seq(source), time=now, zone=zone,
                      data={"state": report.state, "reported": "controller"})]
    return [Event(
        "gate.plate", source, seq=next_seq(source), time=now, severity=Severity.INFO,
        zone=zone, data={
            "plate": report.plate, "raw": report.raw,
            "plate_kind": classify(report.plate).value, "plate_id": report.plate_id,
            "offline": report.offline, "confidence": report.confidence, "colour": "",
            "province_low_confidence": report.province_low, "pictures": [], "vendor": "mqtt",
        })]


def command_message(event_topic: str, action: str, why: str) -> tuple[str, bytes] | None:
    """The message that tells the controller behind `event_topic` to do `action`."""
    name = ACTIONS.get(action)
    if name is None or not event_topic.endswith(EVENT_TOPIC):
        return None
    body = json.dumps({"action": name, "why": why[:200]}, ensure_ascii=False).encode()
    return event_topic[: -len(EVENT_TOPIC)] + COMMAND_TOPIC, body


class GateControllerCodec:
    """Gate controllers behind the MQTT driver's codec seam (drivers.mqtt.codec)."""

    family = "gate_controller"
    told_kind = "gate.state"

    def decode(self, payload: bytes) -> ControllerReport:
        return decode(payload)

    def seq_of(self, report: ControllerReport) -> int | None:
        return None

    def memory(self, known: Mapping[str, Any]) -> Seen:
        return OrderedDict()

    def copy(self, memory: Seen) -> Seen:
        return OrderedDict(memory)

    def repeat(self, report: ControllerReport, memory: Seen) -> bool:
        if report.type != "plate":
            return False
        if report.plate_id in memory:
            return True
        memory[report.plate_id] = None
        while len(memory) > SEEN_PER_GATE:
            memory.popitem(last=False)
        return False

    def normalise(
        self, source: str, zone: str, report: ControllerReport, memory: Seen, now: float,
        next_seq: Callable[[str], int],
    ) -> tuple[list[Reading | Heartbeat], list[Event]]:
        telemetry: list[Reading | Heartbeat] = []
        events: list[Event] = []
        for item in items(source, zone, report, now, next_seq):
            if isinstance(item, Heartbeat):
                telemetry.append(item)
            else:
                events.append(item)
        return telemetry, events

    def command(self, topic: str, action: str, why: str) -> tuple[str, bytes] | None:
        return command_message(topic, action, why)
