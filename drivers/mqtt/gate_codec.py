"""What a gate controller publishes on `<topic>/event`, decoded: pure, from one payload to
the gateway's items, or `PayloadRejected` with a bounded reason.

    {"type": "plate", "plate": "湘A12345", "plate_id": "c-17", "offline": false,
     "confidence": 91, "province_confidence": 88, "pictures": []}
    {"type": "state", "state": "open" | "closed"}
    {"type": "loop"}
    {"type": "heartbeat"}
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gateway.errors import PayloadRejected
from gateway.events import Event, Heartbeat, Severity
from gateway.vehicles.plates import classify, normalise

MAX_PAYLOAD = 16 * 1024  # a read without pictures (a bridge sends those over HTTP)
# A province character given less than this confidence (0-100) may be forgiven.
PROVINCE_LOW_CONFIDENCE = 75


def _reject(reason: str, detail: str) -> PayloadRejected:
    return PayloadRejected(reason, detail)


def decode(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise _reject("too_large", f"{len(payload)} bytes")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _reject("malformed_json", str(exc)[:80]) from None
    if not isinstance(doc, dict) or doc.get("type") not in ("plate", "state", "loop",
                                                            "heartbeat"):
        raise _reject("bad_payload", "no type of plate, state, loop or heartbeat")
    return doc


def items(source: str, zone: str, doc: dict[str, Any], now: float,
          next_seq: Callable[[str], int]) -> list[Event | Heartbeat]:
    kind = doc["type"]
    if kind == "heartbeat":
        return [Heartbeat(source, now)]
    if kind == "loop":
        return [Event("gate.loop", source, seq=next_seq(source), time=now, zone=zone,
                      data={"loop": "passed", "reported": "controller"})]
    if kind == "state":
        state = doc.get("state")
        if state not in ("open", "closed"):
            raise _reject("bad_payload", "state is neither open nor closed")
        return [Event("gate.state", source, seq=next_seq(source), time=now, zone=zone,
                      data={"state": state, "reported": "controller"})]
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
    plate = normalise(raw)
    confidence = doc.get("confidence")
    return [Event(
        "gate.plate", source, seq=next_seq(source), time=now, severity=Severity.INFO,
        zone=zone, data={
            "plate": plate, "raw": raw, "plate_kind": classify(plate).value,
            "plate_id": str(plate_id), "offline": offline,
            "confidence": confidence if isinstance(confidence, int | float) else None,
            "colour": "", "province_low_confidence": low, "pictures": [], "vendor": "mqtt",
        })]
