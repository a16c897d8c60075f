"""The next keyframe taken from RTP and decoded alone: the simulator's packets (single
NAL units and FU fragments) joined back into the very access unit that was encoded, for
H.264 and H.265, decoded by one shared PyAV decoder; a lost fragment or an oversized unit
is given up, never decoded half."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rtsp.keyframe import KeyframeDecoder, KeyframeGrabber
from drivers.rtsp.rtp import Codec, RtpPacket, parse_rtp
from simulators.camera_clips import ClipSpec, PacketisedFrame, load_clip, packetise

CODECS = {"h264": Codec.H264, "h265": Codec.H265}


_SEQ = iter(range(1 << 30))  # the network's numbering runs on across frames


def packets(frame: PacketisedFrame, ts: int) -> list[tuple[RtpPacket, bytes]]:
    out = []
    blob = bytearray(frame.blob)
    for offset in frame.headers:
        struct.pack_into(">HI", blob, offset + 2, next(_SEQ) & 0xFFFF, ts)
    data = bytes(blob)
    for n, offset in enumerate(frame.headers):
        end = frame.headers[n + 1] - 4 if n + 1 < len(frame.headers) else len(data)
        out.append((parse_rtp(data, offset, end), data))
    return out


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_the_next_keyframe_is_the_one_encoded(codec: str) -> None:
    clip = load_clip(ClipSpec(codec))
    frames = packetise(clip)
    grabber = KeyframeGrabber(CODECS[codec])
    got = []
    for n in (1, 2, 24, 25, 26):  # P-frames, then the keyframe at 25
        for pkt, data in packets(frames[n], n * 3600):
            if n == 2:
                grabber.arm()  # armed mid-stream: only a whole keyframe counts
            au = grabber.feed(pkt, data)
            if au is not None:
                got.append((n, au))
    assert [n for n, _ in got] == [25]
    assert got[0][1] == b"".join(b"\x00\x00\x00\x01" + nal for nal in clip.frames[25])
    assert not grabber.armed and grabber.dropped == 0
    luma = KeyframeDecoder().luma(CODECS[codec], got[0][1])
    assert luma is not None
    assert luma.shape == (180, 320)
    assert 50 < float(luma.mean()) < 220


def test_one_decoder_serves_both_codecs_and_many_keyframes() -> None:
    decoder = KeyframeDecoder()
    for _ in range(3):
        for codec in ("h264", "h265"):
            clip = load_clip(ClipSpec(codec))
            au = b"".join(b"\x00\x00\x00\x01" + nal for nal in clip.frames[0])
            luma = decoder.luma(CODECS[codec], au)
            assert luma is not None and luma.shape == (180, 320)
    assert decoder.luma(Codec.H264, b"\x00\x00\x00\x01\x65\xff\xff") is None


def test_a_lost_packet_gives_the_keyframe_up() -> None:
    frames = packetise(load_clip(ClipSpec("h264")))
    grabber = KeyframeGrabber(Codec.H264)
    grabber.arm()
    pieces = packets(frames[0], 0)
    assert len(pieces) > 3
    results = [grabber.feed(pkt, data) for n, (pkt, data) in enumerate(pieces) if n != 2]
    assert results == [None] * (len(pieces) - 1)
    assert grabber.dropped == 1 and grabber.armed  # it waits for the next one
    for pkt, data in packets(frames[25], 25 * 3600):
        au = grabber.feed(pkt, data)
    assert au is not None and not grabber.armed


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_a_p_frame_is_passed_over_whole(codec: str) -> None:
    # Its first slice says it is no keyframe: the rest of its packets are not read, so
    # one lost among them gives nothing up, and the keyframe after it is whole.
    clip = load_clip(ClipSpec(codec, width=640, height=360, bitrate=2_000_000))
    frames = packetise(clip)
    grabber = KeyframeGrabber(CODECS[codec])
    grabber.arm()
    p_frame = packets(frames[1], 3600)
    assert len(p_frame) > 3
    assert all(grabber.feed(p, d) is None for n, (p, d) in enumerate(p_frame) if n != 2)
    assert grabber.dropped == 0 and grabber.armed
    for pkt, data in packets(frames[25], 25 * 3600):
        au = grabber.feed(pkt, data)
    assert au == b"".join(b"\x00\x00\x00\x01" + nal for nal in clip.frames[25])


def test_an_oversized_keyframe_is_given_up() -> None:
    frames = packetise(load_clip(ClipSpec("h265")))
    grabber = KeyframeGrabber(Codec.H265, max_bytes=1000)
    grabber.arm()
    assert all(grabber.feed(p, d) is None for p, d in packets(frames[0], 0))
    assert grabber.dropped == 1


def rtp(seq: int, ts: int, payload: bytes, marker: bool) -> tuple[RtpPacket, bytes]:
    data = bytes((0x80, (0x80 if marker else 0) | 96)) + struct.pack(">HII", seq, ts, 1) + payload
    return parse_rtp(data), data


def test_an_aggregate_is_split_into_its_units() -> None:
    g = KeyframeGrabber(Codec.H264)
    g.arm()
    stap = b"\x18" + b"\x00\x02\x67\x42" + b"\x00\x02\x68\xce" + b"\x00\x03\x65\x88\x80"
    assert g.feed(*rtp(1, 0, stap, marker=True)) == (
        b"\x00\x00\x00\x01\x67\x42\x00\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88\x80")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Codec)),
       st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=12), st.booleans()),
                max_size=12))
def test_any_payloads_give_an_access_unit_or_nothing(
        codec: Codec, items: list[tuple[int, bytes, bool]]) -> None:
    g = KeyframeGrabber(codec, max_bytes=64)
    g.arm()
    for n, (ts, payload, marker) in enumerate(items):
        au = g.feed(*rtp(n, ts, payload, marker))
        if au is not None:
            assert au.startswith(b"\x00\x00\x00\x01") and len(au) <= 64 + 4
            break
