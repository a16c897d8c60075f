"""RTP as it arrives over RTSP's interleaved TCP framing (RFC 2326 §10.12, RFC 3550 §5.1),
and what an H.264 / H.265 payload's first bytes say (RFC 6184, RFC 7798): which NAL unit,
where a fragmented one starts and ends, whether it begins a keyframe. Pure: bytes in,
values or a `PayloadRejected` out; payloads are read in place, never copied."""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from gateway.errors import PayloadRejected

RTP_HEADER_BYTES = 12
_HEADER = struct.Struct(">BBHII")
# RTSP's interleaved frame header: '$', channel, 16-bit length.
INTERLEAVED_HEADER_BYTES = 4


class Codec(enum.StrEnum):
    H264 = "H264"
    H265 = "H265"


class RtpPacket(NamedTuple):
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload_start: int  # offset of the payload in the packet
    payload_end: int  # end of the payload (padding excluded)


def parse_rtp(data: bytes | bytearray, at: int = 0, end: int | None = None) -> RtpPacket:
    """The fixed header, CSRCs, extension and padding of the RTP packet in `data[at:end]`;
    the payload's offsets are in `data`, so nothing is copied."""
    stop = len(data) if end is None else end
    n = stop - at
    if n < RTP_HEADER_BYTES:
        raise PayloadRejected("rtp_short", f"{n} bytes")
    b0, b1, seq, timestamp, ssrc = _HEADER.unpack_from(data, at)
    if b0 == 0x80:  # version 2 and nothing else: what cameras send, read without the rest
        return RtpPacket(b1 >= 0x80, b1 & 0x7F, seq, timestamp, ssrc, at + RTP_HEADER_BYTES,
                         stop)
    if b0 >> 6 != 2:
        raise PayloadRejected("rtp_version", f"version {b0 >> 6}")
    start = at + RTP_HEADER_BYTES + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if start + 4 > stop:
            raise PayloadRejected("rtp_overrun", "extension header past the end")
        start += 4 + 4 * ((data[start + 2] << 8) | data[start + 3])
    payload_end = stop
    if b0 & 0x20:
        pad = data[stop - 1]
        if pad == 0:
            raise PayloadRejected("rtp_overrun", "padding of zero bytes")
        payload_end -= pad
    if start > payload_end:
        raise PayloadRejected("rtp_overrun", f"header to {start - at}, payload end "
                                             f"{payload_end - at}")
    return RtpPacket(bool(b1 & 0x80), b1 & 0x7F, seq, timestamp, ssrc, start, payload_end)


class NalStart(NamedTuple):
    """A NAL unit that begins in a packet (whole, aggregated, or a first fragment)."""

    nal_type: int
    keyframe: bool  # an H.264 IDR / H.265 IRAP picture, or the parameter sets before one


# H.264 (RFC 6184 §5.2): 1-23 one NAL unit, 24 STAP-A, 25 STAP-B, 26/27 MTAP, 28 FU-A, 29 FU-B.
_H264_KEY = frozenset({5, 7, 8})  # IDR slice, SPS, PPS
# H.265 (RFC 7798 §4.4): 48 AP, 49 FU, 50 PACI; 16-23 IRAP (BLA, IDR, CRA), 32-34 VPS/SPS/PPS.
_H265_KEY = frozenset({16, 17, 18, 19, 20, 21, 32, 33, 34})


class Fragment(enum.Enum):
    WHOLE = "whole"  # a single NAL unit or an aggregate of whole units
    FIRST = "first"
    MIDDLE = "middle"
    LAST = "last"


class PayloadView(NamedTuple):
    fragment: Fragment
    starts: tuple[NalStart, ...]  # the NAL units that begin in this packet


def read_payload(codec: Codec, p: bytes | bytearray, at: int = 0,
                 end: int | None = None) -> PayloadView:
    """What the H.264 / H.265 RTP payload in `p[at:end]` holds: NAL units starting here
    and, for a fragment, where in its unit it lies."""
    stop = len(p) if end is None else end
    n = stop - at
    if codec is Codec.H264:
        if n < 1:
            raise PayloadRejected("nal_short", "empty payload")
        t = p[at] & 0x1F
        if 1 <= t <= 23:
            return PayloadView(Fragment.WHOLE, (NalStart(t, t in _H264_KEY),))
        if t == 24:  # STAP-A: [16-bit size][NAL]...
            return PayloadView(Fragment.WHOLE, _aggregate(p, at + 1, stop, 1, codec))
        if t in (28, 29):
            if n < 2:
                raise PayloadRejected("nal_short", "FU without its header")
            fu = p[at + 1]
            return _fragment(fu & 0x80, fu & 0x40, fu & 0x1F, _H264_KEY)
        raise PayloadRejected("nal_type", f"H.264 packetisation type {t}")
    if n < 2:
        raise PayloadRejected("nal_short", f"{n} bytes")
    t = (p[at] >> 1) & 0x3F
    if t < 48:
        return PayloadView(Fragment.WHOLE, (NalStart(t, t in _H265_KEY),))
    if t == 48:  # AP: [16-bit size][NAL]... after the 2-byte payload header
        return PayloadView(Fragment.WHOLE, _aggregate(p, at + 2, stop, 2, codec))
    if t == 49:
        if n < 3:
            raise PayloadRejected("nal_short", "FU without its header")
        fu = p[at + 2]
        return _fragment(fu & 0x80, fu & 0x40, fu & 0x3F, _H265_KEY)
    raise PayloadRejected("nal_type", f"H.265 packetisation type {t}")


def _fragment(start: int, end: int, t: int, key: frozenset[int]) -> PayloadView:
    if start and end:
        raise PayloadRejected("fu_bits", "a fragment marked both first and last")
    if start:
        return PayloadView(Fragment.FIRST, (NalStart(t, t in key),))
    return PayloadView(Fragment.LAST if end else Fragment.MIDDLE, ())


def _aggregate(p: bytes | bytearray, offset: int, n: int, header: int,
               codec: Codec) -> tuple[NalStart, ...]:
    out: list[NalStart] = []
    while offset < n:
        if offset + 2 > n:
            raise PayloadRejected("aggregate_overrun", "a size past the end")
        size = (p[offset] << 8) | p[offset + 1]
        offset += 2
        if size < header or offset + size > n:
            raise PayloadRejected("aggregate_overrun", f"unit of {size} bytes at {offset}")
        b = p[offset]
        if codec is Codec.H264:
            t = b & 0x1F
            out.append(NalStart(t, t in _H264_KEY))
        else:
            t = (b >> 1) & 0x3F
            out.append(NalStart(t, t in _H265_KEY))
        offset += size
    if not out:
        raise PayloadRejected("aggregate_empty", "an aggregation packet with no unit")
    return tuple(out)


class Reassembly:
    """Fragment boundaries across packets: a unit whose first or last fragment went
    missing is counted as broken, not silently joined to the next. Only sizes are kept."""

    def __init__(self) -> None:
        self.open = False
        self.broken = 0

    def feed(self, fragment: Fragment) -> None:
        if fragment is Fragment.WHOLE:
            if self.open:
                self.broken += 1
                self.open = False
        elif fragment is Fragment.FIRST:
            if self.open:
                self.broken += 1
            self.open = True
        elif not self.open:
            self.broken += 1  # a middle or last with no first: the start was lost
        elif fragment is Fragment.LAST:
            self.open = False
