"""The throughput benchmark's load generator: its frames are valid MQTT, it keeps its rate,
and a receiver can count every message it sent."""

from __future__ import annotations

import json

import pytest

from benchmarks.load import blast, encode_remaining_length
from tests.brokers import Mosquitto
from tests.test_simulator import is_report, listening, until


@pytest.mark.parametrize(
    ("length", "encoded"),
    [  # the examples of MQTT 3.1.1 section 2.2.3
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_encoding(length: int, encoded: bytes) -> None:
    assert encode_remaining_length(length) == encoded


def test_remaining_length_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_remaining_length(268_435_456)


async def test_blast_reaches_its_rate_and_the_receiver_can_count(mosquitto: Mosquitto) -> None:
    devices = ["hd-main-01", "hd-main-02", "hd-main-03", "hd-health-01"]
    async with listening(mosquitto) as heard:
        result = await blast(mosquitto.host, mosquitto.port, 4000.0, 2.0, devices,
                             alarm_devices=["hd-health-02"], alarm_every=0.4)
        await until(lambda: len(heard.messages) >= result.total, "every blasted message")
    print(
        f"blast: {result.rate_per_s:.0f} msg/s for {result.wall_s:.2f} s, "
        f"{result.cpu_s:.2f} CPU-s (the subscriber included), {result.alarms} alarms"
    )
    assert result.total > 1000 and result.alarms >= 3
    for device in devices:
        received = [(json.loads(p), q) for p, q in heard.on(device)]
        assert [r["seq"] for r, _q in received] == list(range(1, result[device] + 1))
        assert all(q == 0 and is_report(r) and not r["alarm"] for r, q in received)
    alarms = [(json.loads(p), q) for p, q in heard.on("hd-health-02")]
    assert len(alarms) == result.alarms
    assert [r["alarm"] for r, _q in alarms] == [k % 2 == 0 for k in range(result.alarms)]
    assert all(q == 1 and isinstance(r["sent_at"], float) for r, q in alarms)
