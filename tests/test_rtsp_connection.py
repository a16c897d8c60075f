"""The RTSP connection's reader fed any bytes, split anywhere: it hands on RTP, answers
requests, or ends the connection with a `ProtocolError` naming a counted reason; no other
exception ever reaches the event loop."""

from __future__ import annotations

import asyncio
import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rtsp.connection import RtspConnection
from drivers.rtsp.health import StreamHealth
from drivers.rtsp.rtp import Codec, RtpPacket
from gateway.errors import PayloadRejected, ProtocolError


class Wire(asyncio.Transport):
    """The transport seam: records what was written and whether it was cut."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


def feed(chunks: list[bytes]) -> tuple[RtspConnection, Wire, StreamHealth, list[str]]:
    health = StreamHealth(Codec.H264, 90_000, 0.0)
    reasons: list[str] = []

    def on_rtp(now: float, pkt: RtpPacket, data: bytes) -> None:
        try:
            health.packet(now, pkt, data)
        except PayloadRejected as exc:
            reasons.append(exc.reason)

    conn = RtspConnection(on_rtp, lambda reason, detail: reasons.append(reason))
    wire = Wire()
    conn.connection_made(wire)
    for chunk in chunks:
        if wire.aborted:
            break
        conn.data_received(chunk)
    return conn, wire, health, reasons


def interleaved(seq: int, payload: bytes, channel: int = 0) -> bytes:
    rtp = bytes((0x80, 96)) + struct.pack(">HII", seq, 3600 * seq, 7) + payload
    return b"$" + bytes((channel,)) + struct.pack(">H", len(rtp)) + rtp


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


async def test_rtp_and_answers_interleaved_and_split_anywhere() -> None:
    stream = (interleaved(1, b"\x65" + bytes(50)) + interleaved(2, b"\x41" + bytes(10), 1)
              + b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 3\r\n\r\nv=0"
              + interleaved(2, b"\x41" + bytes(20)))
    for step in (1, 3, 7, len(stream)):
        chunks = [stream[i : i + step] for i in range(0, len(stream), step)]
        conn, wire, health, reasons = feed(chunks)
        assert not wire.aborted and reasons == []
        assert health.packets == 2  # channel 1 (RTCP) is not video
        assert conn.failure is None


_FUZZ = settings(max_examples=200, deadline=None)
_PIECES = st.one_of(
    st.binary(max_size=40),
    st.builds(interleaved, st.integers(0, 0xFFFF), st.binary(max_size=30),
              st.integers(0, 2)),
    st.just(b"RTSP/1.0 200 OK\r\nCSeq: 9\r\n\r\n"),
    st.just(b"$\x00\xff\xff"),
)


@_FUZZ
@given(st.lists(_PIECES, max_size=8), st.lists(st.integers(0, 400), max_size=5))
async def test_any_bytes_end_cleanly(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    conn, wire, _, reasons = feed(split(data, cuts))
    if wire.aborted:
        assert isinstance(conn.failure, ProtocolError)
        assert reasons  # the reason was counted
    else:
        assert conn.failure is None
