"""Every decoder turns any input into a value or a `PayloadRejected`, never another
exception: at QoS 1 an exception drops the link and the broker redelivers the same poison
report forever, and then no alarm on that broker gets in. The plate cameras' pushes
likewise give a read or a `PushRejected` (a counted 4xx), never a server error."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.http_push.codec import PushRejected
from drivers.mqtt.heat_detector import HeatDetectorCodec, load_profile
from gateway.errors import PayloadRejected
from tests.test_http_push_codec import decode

ROOT = Path(__file__).resolve().parent.parent
PROFILE = load_profile(ROOT / "config/profiles/heat-detector.yaml")
CODEC = HeatDetectorCodec(PROFILE)
# The same decoder without its size guard, to reach the parser with poison.
UNGUARDED = HeatDetectorCodec(replace(PROFILE, max_payload_bytes=10**7))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.integers(min_value=10**300, max_value=10**400),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=5),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "seq": JSON | st.integers(-(2**70), 2**70),
        "ts": JSON | st.floats(),
        "temp_c": JSON | st.floats(),
        "alarm": JSON,
        "fault": JSON | st.sampled_from(["dirty", "comm", ""]),
        "battery_pct": JSON | st.integers(-5, 200),
    },
)


def decodes_or_rejects(payload: bytes) -> None:
    """Any other exception escapes and fails the example."""
    reason: str | None = None
    try:
        CODEC.decode(payload)
    except PayloadRejected as exc:
        reason = exc.reason
    if reason is not None:
        assert reason and " " not in reason  # a bounded metric label


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(st.binary(max_size=600))
def test_any_bytes(payload: bytes) -> None:
    decodes_or_rejects(payload)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(FIELDS)
def test_any_report_shaped_document(doc: dict[str, object]) -> None:
    decodes_or_rejects(json.dumps(doc, allow_nan=True).encode())


@settings(max_examples=500, deadline=None, derandomize=True)
@given(JSON)
def test_any_json_document(doc: object) -> None:
    decodes_or_rejects(json.dumps(doc, allow_nan=True).encode())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        # An integer beyond Python's 4,300-digit conversion limit.
        (b'{"seq": 1, "temp_c": ' + b"9" * 5000 + b"}", "bad_json"),
        # Beyond a double: float() overflows.
        (b'{"seq": 1, "temp_c": 1' + b"0" * 400 + b', "alarm": false, "battery_pct": 50}',
         "out_of_range"),
        (b'{"seq": 1' + b"0" * 400 + b', "temp_c": 20, "alarm": false, "battery_pct": 50}',
         "out_of_range"),
        # Nested deeper than the recursion limit.
        (b"[" * 200_000 + b"]" * 200_000, "bad_json"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "bad_json"),
    ],
)
def test_poison_reports(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        UNGUARDED.decode(payload)
    assert caught.value.reason == reason
    # With its size guard, the decoder refuses the big ones before parsing.
    with pytest.raises(PayloadRejected):
        CODEC.decode(payload)


# The listener's routes, as tests/test_http_push_codec.py decodes them without the network.
ROUTES = ("/push/vzenith", "/push/hikvision", "/push/barrier")
PUSH_KEYS = st.sampled_from(["AlarmInfoPlate", "result", "PlateResult", "license",
                             "plateid", "isoffline", "imageFile", "heartbeat", "state",
                             "loop", "x"])
PUSH_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(PUSH_KEYS, inner,
                                                                  max_size=5),
    max_leaves=25,
)


def push_reads_or_refuses(path: str, body: bytes) -> None:
    reason: str | None = None
    try:
        decode(path, body)
    except PushRejected as exc:
        reason = exc.reason
    if reason is not None:
        assert reason and " " not in reason


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(ROUTES), st.binary(max_size=400))
def test_any_push_body(path: str, body: bytes) -> None:
    push_reads_or_refuses(path, body)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.sampled_from(("/push/vzenith", "/push/barrier")), PUSH_JSON | JSON)
def test_any_push_json_document(path: str, doc: object) -> None:
    push_reads_or_refuses(path, json.dumps(doc, allow_nan=True).encode())
