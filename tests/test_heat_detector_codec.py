"""The heat-detector codec, from tables: every malformed kind has its reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from drivers.mqtt.driver import topic_filters
from drivers.mqtt.heat_detector import (
    PROOF_EVERY_S,
    DetectorMemory,
    HeatDetectorCodec,
    decode_report,
    load_profile,
    normalise,
)
from gateway.errors import PayloadRejected
from gateway.events import Event, Heartbeat, Reading, SeqCounter, Severity

PROFILE = load_profile(Path(__file__).parent.parent / "config/profiles/heat-detector.yaml")
GOOD = {"seq": 7, "ts": 1764000000.5, "temp_c": 23.5, "alarm": False, "fault": None,
        "battery_pct": 88}


def payload(**changes: object) -> bytes:
    doc = {**GOOD, **changes}
    return json.dumps({k: v for k, v in doc.items() if v != "<drop>"}).encode()


REJECTS = [
    ("truncated json", b'{"seq": 1, "temp_c": 2', "bad_json"),
    ("not utf-8", b"\xff\xfe{}", "bad_json"),
    ("utf-16", json.dumps(GOOD).encode("utf-16"), "bad_json"),
    ("a lone surrogate", b'{"seq": 1, "fault": "\xed\xa0\x80"}', "bad_json"),
    ("a list", b"[1, 2, 3]", "not_object"),
    ("a string", b'"hot"', "not_object"),
    ("temp as text", payload(temp_c="hot"), "wrong_type"),
    ("alarm as text", payload(alarm="yes"), "wrong_type"),
    ("temp as bool", payload(temp_c=True), "wrong_type"),
    ("fault as number", payload(fault=3), "wrong_type"),
    ("huge temp", payload(temp_c=1e308), "out_of_range"),
    ("infinite temp", b'{"seq":1,"temp_c":Infinity,"alarm":false,"battery_pct":5}',
     "out_of_range"),
    ("NaN temp", b'{"seq":1,"temp_c":NaN,"alarm":false,"battery_pct":5}', "out_of_range"),
    ("minus infinite temp", b'{"seq":1,"temp_c":-Infinity,"alarm":false,"battery_pct":5}',
     "out_of_range"),
    ("integer beyond a float", payload(temp_c=10**400), "out_of_range"),
    ("temp as null", payload(temp_c=None), "missing_field"),
    ("temp as a list", payload(temp_c=[21.5]), "wrong_type"),
    ("seq as bool", payload(seq=True), "wrong_type"),
    ("negative seq", payload(seq=-5), "out_of_range"),
    ("fractional seq", payload(seq=1.5), "out_of_range"),
    ("huge battery", payload(battery_pct=10**12), "out_of_range"),
    ("below sensor range", payload(temp_c=-41), "out_of_range"),
    ("missing temp", payload(temp_c="<drop>"), "missing_field"),
    ("missing alarm", payload(alarm="<drop>"), "missing_field"),
    ("only seq", b'{"seq": 1}', "missing_field"),
    ("unknown fault code", payload(fault="melted"), "unknown_fault"),
    ("oversize", b'{"seq": 1, "pad": "' + b"x" * 300_000 + b'"}', "oversize"),
]


@pytest.mark.parametrize(("case", "raw", "reason"), REJECTS, ids=[r[0] for r in REJECTS])
def test_malformed_reports_are_rejected_with_their_reason(
    case: str, raw: bytes, reason: str
) -> None:
    with pytest.raises(PayloadRejected) as info:
        decode_report(raw, PROFILE)
    assert info.value.reason == reason, case


def test_a_good_report_decodes() -> None:
    report = decode_report(payload(), PROFILE)
    assert (report.seq, report.temp_c, report.alarm, report.fault, report.battery_pct) == (
        7, 23.5, False, None, 88)
    assert report.ts == 1764000000.5


def test_a_byte_order_mark_before_the_report_is_ignored() -> None:
    report = decode_report(b"\xef\xbb\xbf" + payload(), PROFILE)
    assert (report.seq, report.temp_c) == (7, 23.5)


def test_routine_report_is_telemetry_only() -> None:
    memory = DetectorMemory()
    telemetry, events = normalise("hd-main-01", "main-office-a", decode_report(payload(), PROFILE),
                                  memory, 100.0, SeqCounter().next, PROFILE)
    assert events == []
    kinds = [(type(t).__name__, getattr(t, "metric", None)) for t in telemetry]
    assert kinds == [("Reading", "temperature"), ("Reading", "battery"), ("Heartbeat", None)]
    assert isinstance(telemetry[0], Reading) and telemetry[0].value == 23.5
    assert isinstance(telemetry[2], Heartbeat)


def test_a_fast_detector_proves_it_is_alive_once_a_second() -> None:
    """Every report carries its readings; the Heartbeat (which moves the device's state
    back to up) comes with the first report and then at most once per PROOF_EVERY_S."""
    codec, memory = HeatDetectorCodec(PROFILE), DetectorMemory()
    report = decode_report(payload(), PROFILE)
    proofs = []
    for now in (100.0, 100.1, 100.5, 100.99, 101.0, 101.2, 102.5, 160.0):
        telemetry, _ = codec.normalise("hd-main-01", "main-office-a", report, memory, now,
                                       SeqCounter().next)
        assert [getattr(t, "metric", None) for t in telemetry[:2]] == ["temperature", "battery"]
        proofs += [now for t in telemetry if isinstance(t, Heartbeat)]
    assert proofs == [100.0, 101.0, 102.5, 160.0]
    assert PROOF_EVERY_S == 1.0
    # The settled copy the next link starts from keeps the time of the last proof.
    assert codec.copy(memory).proved_at == 160.0
    assert codec.memory({"alarm": True}).proved_at == -math.inf


FLAG_SEQUENCE = [
    # (alarm, fault) of successive reports -> the event kinds they produce
    ((False, None), []),
    ((True, None), ["fire.detector.alarm"]),
    ((True, None), []),
    ((True, "dirty"), ["fire.detector.fault"]),
    ((False, "dirty"), ["fire.detector.alarm_cleared"]),
    ((False, None), ["fire.detector.fault_cleared"]),
    ((True, "tamper"), ["fire.detector.alarm", "fire.detector.fault"]),
]


def test_flag_changes_become_events_with_contiguous_seq() -> None:
    memory, seq = DetectorMemory(), SeqCounter()
    produced: list[Event] = []
    for n, ((alarm, fault), expected) in enumerate(FLAG_SEQUENCE, start=1):
        report = decode_report(payload(seq=n, alarm=alarm, fault=fault), PROFILE)
        _, events = normalise("hd-main-02", "main-canteen", report, memory, float(n),
                              seq.next, PROFILE)
        assert [e.kind for e in events] == expected, (alarm, fault)
        produced += events
    assert [e.seq for e in produced] == list(range(1, len(produced) + 1))
    alarm = produced[0]
    assert alarm.severity is Severity.CRITICAL and alarm.zone == "main-canteen"
    assert alarm.device_time == 1764000000.5
    fault = next(e for e in produced if e.kind == "fire.detector.fault")
    assert fault.data["code"] == "dirty" and fault.data["meaning"]


def test_topic_filters_cover_unknown_devices_of_the_same_family() -> None:
    assert topic_filters(["furong/fire/heat/hd-1", "furong/fire/heat/hd-2", "x/y"]) == [
        "furong/fire/heat/+", "x/+"]
