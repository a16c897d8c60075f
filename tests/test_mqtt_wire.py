"""MQTT 3.1.1 framing from tables: split at every byte boundary, refuse what is not MQTT."""

from __future__ import annotations

import pytest

from drivers.mqtt import wire


def publish_frame(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + wire.encode_length(len(body)) + body


@pytest.mark.parametrize(("n", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_remaining_length_encoding(n: int, encoded: bytes) -> None:
    assert wire.encode_length(n) == encoded


def test_frames_split_correctly_wherever_the_stream_is_cut() -> None:
    stream = (publish_frame("furong/fire/heat/hd-01", b'{"seq":1}')
              + publish_frame("furong/fire/heat/hd-02", b"x" * 300, qos=1, packet_id=7)
              + bytes([wire.PINGRESP, 0]))
    for cut in range(len(stream) + 1):
        splitter = wire.FrameSplitter()
        frames = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:])
        assert [f[0] for f in frames] == [wire.PUBLISH, wire.PUBLISH, wire.PINGRESP], cut
    one = wire.FrameSplitter()
    frames = [f for b in stream for f in one.feed(bytes([b]))]  # a byte at a time
    first = wire.parse_publish(frames[0][1], frames[0][2])
    second = wire.parse_publish(frames[1][1], frames[1][2])
    assert (first.topic, first.payload, first.qos) == ("furong/fire/heat/hd-01", b'{"seq":1}', 0)
    assert (second.qos, second.packet_id, len(second.payload)) == (1, 7, 300)


@pytest.mark.parametrize(("case", "data"), [
    ("length over 4 bytes", b"\x30\xff\xff\xff\xff\x01"),
    ("frame over the limit", b"\x30" + wire.encode_length(wire.MAX_FRAME + 1)),
])
def test_what_is_not_mqtt_is_refused(case: str, data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.FrameSplitter().feed(data)


@pytest.mark.parametrize(("case", "flags", "body"), [
    ("qos 3", 0x06, b"\x00\x01a"),
    ("too short", 0x00, b"\x00"),
    ("topic past the end", 0x00, b"\x00\x09abc"),
    ("no packet id", 0x02, b"\x00\x01a"),
    ("topic not utf-8", 0x00, b"\x00\x02\xff\xfe"),
])
def test_bad_publish_bodies_are_refused(case: str, flags: int, body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.parse_publish(flags, body)


def test_connect_and_subscribe_frames() -> None:
    frame = wire.connect("gw-ingest", 12, clean_session=False, username="gw", password="s3")
    assert frame[0] == wire.CONNECT
    assert b"MQTT\x04\xc0\x00\x0c" in frame  # level 4; user+password flags; keep-alive 12 s
    assert frame.endswith(b"\x00\x02gw\x00\x02s3")
    sub = wire.subscribe(1, [("furong/fire/heat/+", 1)])
    assert sub == b"\x82\x17\x00\x01\x00\x12furong/fire/heat/+\x01"
    assert wire.puback(513) == b"\x40\x02\x02\x01"
