"""MQTT 3.1.1 framing for the ingest session: encoders for what a subscriber sends and an
incremental frame splitter for what it receives. Pure; no I/O (OASIS MQTT 3.1.1 sec. 2-3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK = 0x10, 0x20, 0x30, 0x40
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 0x80, 0x90, 0xC0, 0xD0, 0xE0
# The spec allows 256 MiB; a detector report is ~100 bytes. A frame this large is refused
# before it is buffered, so a broken peer cannot make the gateway hold a huge buffer.
MAX_FRAME = 1 << 20

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class WireError(ValueError):
    """The peer sent bytes that are not MQTT 3.1.1."""


def encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect(client_id: str, keepalive_s: int, *, clean_session: bool,
            username: str | None = None, password: str | None = None) -> bytes:
    flags = 0x02 if clean_session else 0
    payload = _string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive_s) + payload
    return bytes([CONNECT]) + encode_length(len(body)) + body


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_string(f) + bytes([q]) for f, q in filters)
    return bytes([SUBSCRIBE | 0x02]) + encode_length(len(body)) + body


def puback(packet_id: int) -> bytes:
    return bytes([PUBACK, 2]) + struct.pack("!H", packet_id)


PINGREQ_FRAME = bytes([PINGREQ, 0])
DISCONNECT_FRAME = bytes([DISCONNECT, 0])


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    packet_id: int  # 0 for QoS 0
    retain: bool
    dup: bool


Frame = tuple[int, int, bytes]  # (packet type, flags, body)


class FrameSplitter:
    """Feed it bytes as they arrive; it returns every complete frame."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            # Remaining length: 1 to 4 bytes, 7 bits each, low bits first.
            length, shift, i, complete = 0, 0, pos + 1, False
            while i < end and i - pos <= 4:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    complete = True
                    break
            if not complete:
                if i - pos > 4:
                    raise WireError("remaining length longer than 4 bytes")
                break  # the length itself has not all arrived
            if length > MAX_FRAME:
                raise WireError(f"frame of {length} bytes is over the {MAX_FRAME} limit")
            if end - i < length:
                break
            first = buf[pos]
            frames.append((first & 0xF0, first & 0x0F, bytes(buf[i:i + length])))
            pos = i + length
        del buf[:pos]
        return frames


def parse_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise WireError("PUBLISH with QoS 3")
    if len(body) < 2:
        raise WireError("PUBLISH too short")
    (tlen,) = struct.unpack_from("!H", body)
    pos = 2 + tlen
    if len(body) < pos + (2 if qos else 0):
        raise WireError("PUBLISH topic runs past the frame")
    try:
        topic = body[2:pos].decode()
    except UnicodeDecodeError:
        raise WireError("PUBLISH topic is not UTF-8") from None
    packet_id = 0
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, pos)
        pos += 2
    return Publish(topic, body[pos:], qos, packet_id, bool(flags & 1), bool(flags & 8))
