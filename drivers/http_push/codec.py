"""What plate cameras push, decoded: pure functions from a body to a `PlateRead` or a
heartbeat, raising `PushRejected` (with a bounded reason) for anything else.

- Vzenith style: JSON `{"AlarmInfoPlate": {"result": {"PlateResult": {license, colorType,
  type, confidence, plateid, isoffline, timeStamp, imageFile (base64)}}}}`; a heartbeat is
  `{"heartbeat": {...}}`.
- Hikvision style: `anpr.xml` (`EventNotificationAlert` with `eventType` ANPR and an
  `ANPR` element: licensePlate, confidenceLevel, plateColor, ...), pictures beside it in
  the multipart body; `eventType` heartBeat is a heartbeat.
- A barrier controller: JSON `{"state": "open"|"closed", "loop": "passed"}`.
"""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from drivers.payloads import parse_json
from gateway.vehicles.plates import normalise

# A camera that gives its province character less than this confidence (0-100) lets the
# registry forgive that character (one edit).
PROVINCE_LOW_CONFIDENCE = 75
MAX_PLATE_CHARS = 16
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")
_NAMESPACE = re.compile(r"\{[^}]*\}")


class PushRejected(ValueError):
    """A push that is not what its camera should send; `reason` is a bounded label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PlateRead:
    plate: str  # normalised; "" when the camera saw no plate
    raw: str  # as the camera sent it
    plate_id: str  # the camera's own id of the read (dedupe)
    confidence: float | None = None
    colour: str = ""
    offline: bool = False  # a record kept while the gateway was unreachable: history
    device_time: float | None = None
    province_low_confidence: bool = False
    pictures: tuple[bytes, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class BarrierReport:
    state: str | None  # "open" / "closed"
    loop_passed: bool


def check_picture(data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise PushRejected("picture_too_large",
                           f"picture of {len(data)} bytes is over {max_bytes}")
    if not data.startswith(_IMAGE_MAGIC):
        raise PushRejected("bad_picture", "a picture that is neither JPEG nor PNG")
    return data


def _json(body: bytes) -> Any:
    try:
        return parse_json(body)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError among them
        raise PushRejected("malformed_json", f"not JSON: {exc}") from None
    except RecursionError:
        raise PushRejected("malformed_json", "not JSON: nested too deeply") from None


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
    else:
        raise PushRejected("bad_payload", f"{what} is missing or not text")
    if len(text) > 64:
        raise PushRejected("bad_payload", f"{what} is too long")
    return text


def _plate(raw: str) -> str:
    if len(raw) > MAX_PLATE_CHARS:
        raise PushRejected("bad_payload", "plate text too long")
    return normalise(raw)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def vzenith_kind(body: bytes) -> tuple[str, dict[str, Any]]:
    """("plate" | "heartbeat", the document)."""
    doc = _json(body)
    if not isinstance(doc, dict):
        raise PushRejected("bad_payload", "the push is not a JSON object")
    if "AlarmInfoPlate" in doc:
        return "plate", doc
    if "heartbeat" in doc:
        return "heartbeat", doc
    raise PushRejected("bad_payload", "neither AlarmInfoPlate nor heartbeat")


def vzenith_plate(doc: dict[str, Any], max_picture: int) -> PlateRead:
    try:
        result = doc["AlarmInfoPlate"]["result"]["PlateResult"]
    except (KeyError, TypeError):
        raise PushRejected("bad_payload", "no AlarmInfoPlate.result.PlateResult") from None
    if not isinstance(result, dict):
        raise PushRejected("bad_payload", "PlateResult is not an object")
    raw = _text(result.get("license", ""), "license")
    plate_id = _text(result.get("plateid"), "plateid")
    offline = result.get("isoffline", 0)
    if offline not in (0, 1, "0", "1", True, False):
        raise PushRejected("bad_payload", "isoffline is neither 0 nor 1")
    stamp = result.get("timeStamp")
    device_time = None
    if isinstance(stamp, dict):
        tv = stamp.get("Timeval", stamp)
        if isinstance(tv, dict):
            device_time = _number(tv.get("sec"))
    pictures: tuple[bytes, ...] = ()
    image = result.get("imageFile")
    if image is not None:
        if not isinstance(image, str):
            raise PushRejected("bad_picture", "imageFile is not base64 text")
        if len(image) > max_picture * 4 // 3 + 8:
            raise PushRejected("picture_too_large", "imageFile is over the picture cap")
        try:
            data = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            raise PushRejected("bad_picture", "imageFile is not base64") from None
        pictures = (check_picture(data, max_picture),)
    province = _number(result.get("provinceConfidence"))
    return PlateRead(
        plate=_plate(raw), raw=raw, plate_id=plate_id,
        confidence=_number(result.get("confidence")),
        colour=str(result.get("colorType", ""))[:16],
        offline=offline in (1, "1", True), device_time=device_time,
        province_low_confidence=province is not None and province < PROVINCE_LOW_CONFIDENCE,
        pictures=pictures,
    )


def parse_xml(body: bytes) -> ET.Element:
    # No document type, so no entity can expand: a camera's alert never has one.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise PushRejected("malformed_xml", "XML with a document type is refused")
    try:
        root = ET.fromstring(body)  # noqa: S314  # bounded body, no DTD (checked above)
    except ET.ParseError as exc:
        raise PushRejected("malformed_xml", f"not XML: {exc}") from None
    for element in root.iter():
        element.tag = _NAMESPACE.sub("", element.tag)
    return root


def _find(root: ET.Element, path: str) -> str | None:
    node = root.find(path)
    return None if node is None or node.text is None else node.text.strip()


def hikvision_kind(root: ET.Element) -> str:
    if root.tag != "EventNotificationAlert":
        raise PushRejected("bad_payload", f"root element {root.tag[:40]!r} is no alert")
    event_type = (_find(root, "eventType") or "").lower()
    if event_type == "anpr":
        return "plate"
    if event_type == "heartbeat":
        return "heartbeat"
    raise PushRejected("bad_payload", f"eventType {event_type[:40]!r} is neither ANPR nor"
                                      " heartBeat")


def hikvision_plate(root: ET.Element, pictures: tuple[bytes, ...]) -> PlateRead:
    raw = _find(root, "ANPR/licensePlate")
    if raw is None:
        raise PushRejected("bad_payload", "no ANPR/licensePlate")
    plate_id = _find(root, "UUID") or _find(root, "ANPR/plateId")
    when = _find(root, "dateTime") or ""
    if plate_id is None:
        if not when:
            raise PushRejected("bad_payload", "neither UUID nor dateTime to tell reads apart")
        plate_id = f"{when}/{raw}"
    province = _number(_find(root, "ANPR/provinceConfidence"))
    return PlateRead(
        plate=_plate(raw), raw=raw[:MAX_PLATE_CHARS], plate_id=_text(plate_id, "UUID"),
        confidence=_number(_find(root, "ANPR/confidenceLevel")),
        colour=(_find(root, "ANPR/plateColor") or "")[:16],
        province_low_confidence=province is not None and province < PROVINCE_LOW_CONFIDENCE,
        pictures=pictures,
    )


def barrier_report(body: bytes) -> BarrierReport:
    doc = _json(body)
    if not isinstance(doc, dict):
        raise PushRejected("bad_payload", "the report is not a JSON object")
    state = doc.get("state")
    if state not in (None, "open", "closed"):
        raise PushRejected("bad_payload", "state is neither open nor closed")
    loop = doc.get("loop")
    if loop not in (None, "passed"):
        raise PushRejected("bad_payload", "loop is not 'passed'")
    if state is None and loop is None:
        raise PushRejected("bad_payload", "neither state nor loop")
    return BarrierReport(state, loop == "passed")


# ---- the barrier's HTTP control (ISAPI style) ---------------------------------------------

# What each command asks of the barrier, and the state it should then read.
GATE_MODES: dict[str, tuple[str, str]] = {
    "open": ("open", "open"),
    "close": ("close", "closed"),
    "hold_open": ("alwaysOpen", "open"),  # fire linkage: stays up until released
    "release": ("normal", "closed"),
}
# barrierGateStatus: 1 closed, 2 open (3 moving, 4 stopped in between).
GATE_STATUS: dict[str, str] = {"1": "closed", "2": "open", "3": "moving", "4": "stopped"}


def gate_control_body(action: str) -> bytes:
    mode, _ = GATE_MODES[action]
    return f"<BarrierGate><ctrlMode>{mode}</ctrlMode></BarrierGate>".encode()


def gate_status(body: bytes) -> str:
    root = parse_xml(body)
    code = _find(root, "barrierGateStatus") if root.tag != "barrierGateStatus" else root.text
    state = GATE_STATUS.get((code or "").strip())
    if state is None:
        raise PushRejected("bad_payload", f"barrierGateStatus {code!r} is not 1-4")
    return state


# ---- multipart bodies ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    name: str
    filename: str
    content_type: str
    data: bytes = field(repr=False)


def multipart_parts(content_type: str, body: bytes) -> list[Part]:
    """The parts of a `multipart/form-data` body (already read, within its cap)."""
    import email.parser
    import email.policy

    if not content_type.lower().startswith("multipart/"):
        raise PushRejected("bad_payload", "the push is not multipart")
    if "boundary=" not in content_type:
        raise PushRejected("bad_payload", "a multipart push without a boundary")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise PushRejected("bad_payload", "the multipart body has no parts")
    parts: list[Part] = []
    for sub in message.iter_parts():
        payload = sub.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        name = sub.get_param("name", "", header="content-disposition")
        parts.append(Part(name if isinstance(name, str) else "", sub.get_filename() or "",
                          sub.get_content_type(), payload))
    if not parts:
        raise PushRejected("bad_payload", "the multipart body has no parts")
    return parts


def hikvision_parts(parts: list[Part], max_picture: int) -> tuple[bytes, tuple[bytes, ...]]:
    """The `anpr.xml` part and the pictures of a Hikvision-style push."""
    xml = [p for p in parts if p.filename.lower().endswith(".xml") or p.name.lower()
           in ("anpr.xml", "anpr") or p.content_type in ("text/xml", "application/xml")]
    if len(xml) != 1:
        raise PushRejected("bad_payload", f"{len(xml)} XML parts, expected one anpr.xml")
    pictures = tuple(check_picture(p.data, max_picture) for p in parts
                     if p is not xml[0] and p.content_type.startswith("image/"))
    return xml[0].data, pictures
