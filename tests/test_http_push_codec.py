"""The plate cameras' push formats from tables, with no network: Vzenith JSON, Hikvision
multipart anpr.xml, barrier reports and the barrier's status; every bad body refused
with its bounded reason."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from drivers.http_push.codec import (
    PushRejected,
    barrier_report,
    gate_control_body,
    gate_status,
    hikvision_kind,
    hikvision_parts,
    hikvision_plate,
    multipart_parts,
    parse_xml,
    vzenith_kind,
    vzenith_plate,
)
from simulators.gates import MALFORMED, hikvision_body, hikvision_xml, picture, vzenith_body

PIC = picture(512)


def decode(path: str, body: bytes) -> object:
    """What the listener makes of a body on one of its routes (without the network)."""
    if path == "/push/vzenith":
        return vzenith_plate(vzenith_kind(body)[1], 4096)
    if path == "/push/hikvision":
        root = parse_xml(body)
        hikvision_kind(root)
        return hikvision_plate(root, ())
    return barrier_report(body)


def test_a_vzenith_read_with_its_picture() -> None:
    kind, doc = vzenith_kind(vzenith_body("湘Ａ·12345", "id-1", picture_bytes=PIC))
    read = vzenith_plate(doc, 4096)
    assert kind == "plate"
    assert (read.plate, read.raw, read.plate_id, read.offline) == (
        "湘A12345", "湘Ａ·12345", "id-1", False)
    assert read.pictures == (PIC,) and read.confidence == 92.0
    assert not read.province_low_confidence
    offline = vzenith_plate(vzenith_kind(vzenith_body("湘A12345", "id-2", offline=True))[1], 1)
    assert offline.offline and offline.pictures == ()
    low = vzenith_kind(vzenith_body("湘A12345", "id-3", province_confidence=40))[1]
    assert vzenith_plate(low, 1).province_low_confidence
    assert vzenith_kind(b'{"heartbeat": {"countid": 3}}')[0] == "heartbeat"


def _doc(**result: object) -> dict[str, object]:
    return {"AlarmInfoPlate": {"result": {"PlateResult": result}}}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        # Nested deeper than the recursion limit, within the listener's body limit.
        (b"[" * 200_000 + b"]" * 200_000, "malformed_json"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "malformed_json"),
        (b"[]", "bad_payload"),
        (b'{"other": 1}', "bad_payload"),
        (json.dumps(_doc(license="湘A12345")).encode(), "bad_payload"),  # no plateid
        (json.dumps(_doc(license=["x"], plateid="1")).encode(), "bad_payload"),
        (json.dumps(_doc(license="湘A12345", plateid="1", isoffline=7)).encode(), "bad_payload"),
        (json.dumps(_doc(license="湘A1234567890123456", plateid="1")).encode(), "bad_payload"),
        (json.dumps(_doc(license="湘A12345", plateid="1", imageFile="***")).encode(),
         "bad_picture"),
        (json.dumps(_doc(license="湘A12345", plateid="1",
                         imageFile=base64.b64encode(b"GIF89a").decode())).encode(),
         "bad_picture"),
        (json.dumps(_doc(license="湘A12345", plateid="1",
                         imageFile=base64.b64encode(picture(9000)).decode())).encode(),
         "picture_too_large"),
    ],
)
def test_bad_vzenith_pushes(body: bytes, reason: str) -> None:
    with pytest.raises(PushRejected) as caught:
        decode("/push/vzenith", body)
    assert caught.value.reason == reason


def test_a_hikvision_multipart_read_with_two_pictures() -> None:
    body, ctype = hikvision_body("湘A12345", "uuid-9", pictures=[PIC, PIC])
    xml, pictures = hikvision_parts(multipart_parts(ctype, body), 4096)
    root = parse_xml(xml)
    assert hikvision_kind(root) == "plate"
    read = hikvision_plate(root, pictures)
    assert (read.plate, read.plate_id, read.colour, len(read.pictures)) == (
        "湘A12345", "uuid-9", "blue", 2)
    beat = parse_xml(b"<EventNotificationAlert><eventType>heartBeat</eventType>"
                     b"</EventNotificationAlert>")
    assert hikvision_kind(beat) == "heartbeat"


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (b"<EventNotificationAlert><eventType>ANPR", "malformed_xml"),
        (b'<!DOCTYPE x [<!ENTITY a "a">]><x>&a;</x>', "malformed_xml"),
        (b"<Other/>", "bad_payload"),
        (b"<EventNotificationAlert><eventType>VMD</eventType></EventNotificationAlert>",
         "bad_payload"),
        (b"<EventNotificationAlert><eventType>ANPR</eventType></EventNotificationAlert>",
         "bad_payload"),  # no licensePlate
        (b"<EventNotificationAlert><eventType>ANPR</eventType><ANPR><licensePlate>x"
         b"</licensePlate></ANPR></EventNotificationAlert>", "bad_payload"),  # no id, no time
    ],
)
def test_bad_hikvision_xml(xml: bytes, reason: str) -> None:
    with pytest.raises(PushRejected) as caught:
        decode("/push/hikvision", xml)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([], "bad_payload"),  # no anpr.xml
        ([hikvision_xml("湘A12345", "u"), hikvision_xml("湘A12345", "v")], "bad_payload"),
    ],
)
def test_bad_hikvision_multipart(parts: list[bytes], reason: str) -> None:
    body, ctype = hikvision_body("湘A12345", "u", pictures=[PIC])
    if len(parts) != 1:
        # rebuild with the XML parts given (none, or two)
        import uuid

        boundary = uuid.uuid4().hex
        chunks = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"pic\"; "
                  f"filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n".encode() + PIC]
        chunks += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"anpr.xml\"; "
                   f"filename=\"anpr.xml\"\r\nContent-Type: application/xml\r\n\r\n"
                   .encode() + p for p in parts]
        body = b"\r\n".join(chunks) + f"\r\n--{boundary}--\r\n".encode()
        ctype = f"multipart/form-data; boundary={boundary}"
    with pytest.raises(PushRejected) as caught:
        hikvision_parts(multipart_parts(ctype, body), 4096)
    assert caught.value.reason == reason
    with pytest.raises(PushRejected):
        multipart_parts("multipart/form-data", body)  # no boundary


def test_barrier_reports_and_status() -> None:
    assert barrier_report(b'{"state": "open"}').state == "open"
    assert barrier_report(b'{"loop": "passed"}').loop_passed
    for bad in (b'{"state": "sideways"}', b"{}", b'{"loop": 1}', b"[]"):
        with pytest.raises(PushRejected):
            barrier_report(bad)
    assert gate_control_body("hold_open") == (
        b"<BarrierGate><ctrlMode>alwaysOpen</ctrlMode></BarrierGate>")
    assert gate_status(b"<BarrierGateStatus><barrierGateStatus>2</barrierGateStatus>"
                       b"</BarrierGateStatus>") == "open"
    assert gate_status(b"<BarrierGateStatus><barrierGateStatus>1</barrierGateStatus>"
                       b"</BarrierGateStatus>") == "closed"
    with pytest.raises(PushRejected):
        gate_status(b"<BarrierGateStatus><barrierGateStatus>9</barrierGateStatus>"
                    b"</BarrierGateStatus>")


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_the_simulators_malformed_pushes_are_refused_by_the_codec(name: str) -> None:
    path, body, _ = MALFORMED[name]
    with pytest.raises(PushRejected):
        decode(path, body)


# ---- gate controllers over MQTT ---------------------------------------------------------------

def _seq() -> Any:
    counter = iter(range(1, 1000))
    return lambda source: next(counter)


@pytest.mark.parametrize(
    ("payload", "kinds"),
    [
        (b'{"type": "plate", "plate": "\\u6e58a 12345", "plate_id": "c-1"}', ["gate.plate"]),
        (b'{"type": "plate", "plate": "", "plate_id": 7, "offline": true}', ["gate.plate"]),
        (b'{"type": "state", "state": "open"}', ["gate.state"]),
        (b'{"type": "loop"}', ["gate.loop"]),
        (b'{"type": "heartbeat"}', ["heartbeat"]),
    ],
)
def test_gate_controller_payloads(payload: bytes, kinds: list[str]) -> None:
    from drivers.mqtt import gate_codec
    from gateway.events import Event

    out = gate_codec.items("gate-x", "z", gate_codec.decode(payload), 1.0, _seq())
    assert [i.kind if isinstance(i, Event) else "heartbeat" for i in out] == kinds
    if kinds == ["gate.plate"] and isinstance(out[0], Event):
        assert out[0].data["plate"] in ("湘A12345", "")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "malformed_json"),
        (b"[]", "bad_payload"),
        (b'{"type": "x"}', "bad_payload"),
        (b'{"type": "state", "state": "ajar"}', "bad_payload"),
        (b'{"type": "plate", "plate_id": "c"}', "bad_payload"),
        (b'{"type": "plate", "plate": "\\u6e58A12345"}', "bad_payload"),
        (b'{"type": "plate", "plate": "\\u6e58A12345", "plate_id": "c", "offline": 1}',
         "bad_payload"),
        (b'{"type": "heartbeat", "pad": "' + b"x" * 20000 + b'"}', "too_large"),
    ],
)
def test_bad_gate_controller_payloads(payload: bytes, reason: str) -> None:
    from drivers.mqtt import gate_codec
    from gateway.errors import PayloadRejected

    with pytest.raises(PayloadRejected) as caught:
        gate_codec.items("gate-x", "z", gate_codec.decode(payload), 1.0, _seq())
    assert caught.value.reason == reason
