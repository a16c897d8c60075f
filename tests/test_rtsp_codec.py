"""The camera stream's pure parts from tables and properties: RTP headers, NAL types and
fragment boundaries, frame-rate and bitrate windows, sequence gaps, SDP, RTSP answers
within their size limits, and Digest. Any bytes give a value or a `PayloadRejected`."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rtsp import auth
from drivers.rtsp.health import FrameClock, RateWindow, SeqTracker, StreamHealth
from drivers.rtsp.messages import MAX_HEADER_BYTES, parse_response, session_of
from drivers.rtsp.rtp import Codec, Fragment, Reassembly, parse_rtp, read_payload
from drivers.rtsp.sdp import control_url, parse_sdp
from gateway.errors import PayloadRejected


def rtp(seq: int, ts: int, payload: bytes, *, marker: bool = False, pt: int = 96,
        first: int = 0x80) -> bytes:
    return bytes((first, (0x80 if marker else 0) | pt)) + struct.pack(
        ">HII", seq, ts, 0x1234) + payload


@pytest.mark.parametrize(("packet", "expected"), [
    (rtp(7, 90000, b"\x65abc", marker=True), (True, 96, 7, 90000, 12, 16)),
    (rtp(65535, 0, b"\x41", pt=97), (False, 97, 65535, 0, 12, 13)),
    # two CSRCs move the payload by 8 bytes
    (bytes((0x82, 96)) + struct.pack(">HII", 1, 2, 3) + bytes(8) + b"\x41",
     (False, 96, 1, 2, 20, 21)),
    # an extension header of one word
    (bytes((0x90, 96)) + struct.pack(">HII", 1, 2, 3) + b"\xbe\xde\x00\x01" + bytes(4)
     + b"\x41", (False, 96, 1, 2, 20, 21)),
    # three bytes of padding
    (bytes((0xA0, 96)) + struct.pack(">HII", 1, 2, 3) + b"\x41\x00\x00\x03",
     (False, 96, 1, 2, 12, 13)),
])
def test_rtp_headers(packet: bytes, expected: tuple[object, ...]) -> None:
    p = parse_rtp(packet)
    assert (p.marker, p.payload_type, p.seq, p.timestamp, p.payload_start,
            p.payload_end) == expected


@pytest.mark.parametrize(("packet", "reason"), [
    (b"", "rtp_short"),
    (bytes(11), "rtp_short"),
    (bytes(12), "rtp_version"),
    (b"\x40" + bytes(11), "rtp_version"),
    (bytes((0x8F, 96)) + bytes(10), "rtp_overrun"),  # 15 CSRCs in 12 bytes
    (bytes((0x90, 96)) + bytes(10) + b"\x00\x00\x00\x09", "rtp_overrun"),
    (bytes((0xA0, 96)) + bytes(10) + b"\x00", "rtp_overrun"),  # padding of zero
    (bytes((0xA0, 96)) + bytes(10) + b"\x41\xff", "rtp_overrun"),
])
def test_rtp_rejections(packet: bytes, reason: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        parse_rtp(packet)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("codec", "payload", "fragment", "starts"), [
    (Codec.H264, b"\x65", Fragment.WHOLE, [(5, True)]),  # IDR slice
    (Codec.H264, b"\x41", Fragment.WHOLE, [(1, False)]),  # P slice
    (Codec.H264, b"\x67", Fragment.WHOLE, [(7, True)]),  # SPS
    (Codec.H264, b"\x06", Fragment.WHOLE, [(6, False)]),  # SEI
    (Codec.H264, b"\x18\x00\x02\x67\x42\x00\x01\x68\x00\x01\x65",
     Fragment.WHOLE, [(7, True), (8, True), (5, True)]),  # STAP-A: SPS, PPS, IDR
    (Codec.H264, b"\x7c\x85", Fragment.FIRST, [(5, True)]),  # FU-A start of an IDR
    (Codec.H264, b"\x7c\x05", Fragment.MIDDLE, []),
    (Codec.H264, b"\x7c\x45", Fragment.LAST, []),
    (Codec.H264, b"\x5c\x81", Fragment.FIRST, [(1, False)]),  # FU-A start of a P slice
    (Codec.H265, b"\x26\x01", Fragment.WHOLE, [(19, True)]),  # IDR_W_RADL
    (Codec.H265, b"\x2a\x01", Fragment.WHOLE, [(21, True)]),  # CRA
    (Codec.H265, b"\x02\x01", Fragment.WHOLE, [(1, False)]),  # TRAIL_R
    (Codec.H265, b"\x40\x01", Fragment.WHOLE, [(32, True)]),  # VPS
    (Codec.H265, b"\x62\x01\x93", Fragment.FIRST, [(19, True)]),  # FU start of IDR
    (Codec.H265, b"\x62\x01\x13", Fragment.MIDDLE, []),
    (Codec.H265, b"\x62\x01\x41", Fragment.LAST, []),
    (Codec.H265, b"\x60\x01\x00\x02\x40\x01\x00\x02\x42\x01",
     Fragment.WHOLE, [(32, True), (33, True)]),  # AP: VPS, SPS
])
def test_nal_units(codec: Codec, payload: bytes, fragment: Fragment,
                   starts: list[tuple[int, bool]]) -> None:
    view = read_payload(codec, payload)
    assert view.fragment is fragment
    assert [(s.nal_type, s.keyframe) for s in view.starts] == starts


@pytest.mark.parametrize(("codec", "payload", "reason"), [
    (Codec.H264, b"", "nal_short"),
    (Codec.H264, b"\x00", "nal_type"),  # type 0 is unspecified
    (Codec.H264, b"\x1e", "nal_type"),  # 30: reserved
    (Codec.H264, b"\x7c", "nal_short"),
    (Codec.H264, b"\x7c\xc5", "fu_bits"),  # first and last at once
    (Codec.H264, b"\x18\x00\x09\x67", "aggregate_overrun"),
    (Codec.H264, b"\x18", "aggregate_empty"),
    (Codec.H265, b"\x26", "nal_short"),
    (Codec.H265, b"\x62\x01", "nal_short"),
    (Codec.H265, b"\x64\x01", "nal_type"),  # 50: PACI, not sent by cameras
    (Codec.H265, b"\x60\x01\x00\x01\x40", "aggregate_overrun"),  # a unit shorter than its header
])
def test_nal_rejections(codec: Codec, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        read_payload(codec, payload)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("fragments", "broken", "open_after"), [
    ("W W W", 0, False),
    ("F M M L W", 0, False),
    ("F L F L", 0, False),
    ("M L W", 2, False),  # the first fragment was lost: middle and last are orphans
    ("F M F L", 1, False),  # a new unit began before the last one ended
    ("F M W", 1, False),
    ("F M", 0, True),
])
def test_fragment_boundaries(fragments: str, broken: int, open_after: bool) -> None:
    names = {"W": Fragment.WHOLE, "F": Fragment.FIRST, "M": Fragment.MIDDLE,
             "L": Fragment.LAST}
    r = Reassembly()
    for f in fragments.split():
        r.feed(names[f])
    assert (r.broken, r.open) == (broken, open_after)


@pytest.mark.parametrize(("seqs", "lost", "late", "restarts"), [
    ([1, 2, 3, 4], 0, 0, 0),
    ([65534, 65535, 0, 1], 0, 0, 0),  # wrap
    ([1, 2, 5, 6], 2, 0, 0),
    ([65535, 2], 2, 0, 0),  # a gap across the wrap
    ([1, 2, 3, 2, 4], 0, 1, 0),  # a late (repeated) packet is no gap
    ([1, 2, 40000, 40001], 0, 0, 1),  # a jump: the sender started over
])
def test_sequence_gaps(seqs: list[int], lost: int, late: int, restarts: int) -> None:
    t = SeqTracker()
    for s in seqs:
        t.packet(s)
    assert (t.lost, t.late, t.restarts) == (lost, late, restarts)


@pytest.mark.parametrize(("stamps", "fps"), [
    ([0, 3600, 7200, 10800], 25.0),
    ([0, 45000, 90000], 2.0),
    ([0xFFFFF000, 0xFFFFF000 + 3000, 0xFFFFF000 + 6000 - (1 << 32)], 30.0),  # wrap
    ([0], None),
    ([5, 5], None),
])
def test_frame_rate_from_rtp_time(stamps: list[int], fps: float | None) -> None:
    c = FrameClock(90_000)
    for s in stamps:
        c.frame(s)
    got = c.fps()
    assert got == (pytest.approx(fps) if fps is not None else None)


def test_rate_window_forgets_what_is_older_than_the_window() -> None:
    w = RateWindow(5.0)
    for t in range(10):
        w.add(float(t), 100.0)
    assert w.total(9.0) == 500.0  # t = 5..9
    assert w.per_second(9.0) == 100.0
    assert w.total(20.0) == 0.0


def test_stream_health_counts_frames_keyframes_and_gaps() -> None:
    h = StreamHealth(Codec.H264, 90_000, now=0.0)
    seq = 0
    for frame in range(51):  # two seconds of 25 fps, a keyframe each second
        ts = frame * 3600
        now = frame * 0.04
        first = b"\x7c\x85" if frame % 25 == 0 else b"\x5c\x81"
        for payload in (first + bytes(1000), b"\x7c\x45" + bytes(200)):
            seq += 1
            if frame == 30 and payload.startswith(b"\x7c\x45"):
                continue  # one packet lost
            pkt = rtp(seq, ts, payload)
            h.packet(now, parse_rtp(pkt), pkt)
    snap = h.snapshot(2.0)
    assert snap.frames == 50  # the 51st is still open
    assert snap.fps == pytest.approx(25.0)
    assert snap.keyframe_interval_s == pytest.approx(1.0)
    assert snap.lost == 1
    assert snap.broken_units == 1  # the unit whose last fragment never came
    assert snap.bitrate_bps > 0


@pytest.mark.parametrize(("raw", "status", "headers", "body"), [
    (b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nPublic: OPTIONS, DESCRIBE\r\n\r\n", 200,
     {"cseq": "3", "public": "OPTIONS, DESCRIBE"}, b""),
    (b"RTSP/1.0 200 OK\r\nCSeq: 4\r\nContent-Length: 5\r\n\r\nv=0\r\nrest", 200,
     {"cseq": "4", "content-length": "5"}, b"v=0\r\n"),
    (b"RTSP/1.0 401 Unauthorized\r\ncseq: 1\r\n\r\n", 401, {"cseq": "1"}, b""),
])
def test_rtsp_answers(raw: bytes, status: int, headers: dict[str, str], body: bytes) -> None:
    parsed = parse_response(raw)
    assert parsed is not None
    response, used = parsed
    assert (response.status, response.headers, response.body) == (status, headers, body)
    assert raw[used:] in (b"", b"rest")


def test_both_challenges_of_a_camera_are_kept() -> None:
    raw = (b'RTSP/1.0 401 Unauthorized\r\nCSeq: 2\r\nWWW-Authenticate: Digest realm="c", '
           b'nonce="n"\r\nWWW-Authenticate: Basic realm="c"\r\n\r\n')
    parsed = parse_response(raw)
    assert parsed is not None
    assert parsed[0].authenticate == ('Digest realm="c", nonce="n"', 'Basic realm="c"')
    assert auth.pick(parsed[0].authenticate).scheme == "digest"


@pytest.mark.parametrize("partial", [b"", b"RTS", b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n",
                                     b"RTSP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nv=0"])
def test_an_incomplete_answer_waits(partial: bytes) -> None:
    assert parse_response(partial) is None


@pytest.mark.parametrize(("raw", "reason"), [
    (b"HTTP/1.1 200 OK\r\n\r\n", "rtsp_garbage"),
    (b"\x17\x03\x03 not an answer", "rtsp_garbage"),
    (b"RTSP/1.0 200 OK\r\nX-Pad: " + b"A" * (MAX_HEADER_BYTES + 10), "rtsp_header_too_large"),
    (b"RTSP/1.0 2xx OK\r\n\r\n", "rtsp_status_line"),
    (b"RTSP/1.0 200 OK\r\nno colon here\r\n\r\n", "rtsp_header_line"),
    (b"RTSP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", "rtsp_content_length"),
    (b"RTSP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n", "rtsp_body_too_large"),
    (b"RTSP/1.0 200 OK\r\n" + b"A: b\r\n" * 100 + b"\r\n", "rtsp_header_too_large"),
])
def test_rtsp_rejections(raw: bytes, reason: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        parse_response(raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("value", "ident", "timeout"), [
    ("12345678;timeout=60", "12345678", 60.0),
    ("abc", "abc", None),
    ("abc; timeout=0", "abc", None),  # absurd: ignored, the default keep-alive holds
    ("abc;timeout=x", "abc", None),
])
def test_session_header(value: str, ident: str, timeout: float | None) -> None:
    assert session_of(value) == (ident, timeout)


SDP_H264 = b"""v=0\r
o=- 1 1 IN IP4 10.0.0.5\r
s=Media Presentation\r
t=0 0\r
a=control:*\r
m=audio 0 RTP/AVP 0\r
a=rtpmap:0 PCMU/8000\r
a=control:trackID=2\r
m=video 0 RTP/AVP 96\r
a=rtpmap:96 H264/90000\r
a=fmtp:96 profile-level-id=420029; packetization-mode=1; sprop-parameter-sets=Z0IAKeKQ,aM48gA==\r
a=framerate:25.000000\r
a=control:trackID=1\r
"""


def test_sdp_of_a_camera() -> None:
    d = parse_sdp(SDP_H264)
    assert d.media == ("audio", "video")
    assert d.control == "*"
    v = d.video
    assert v is not None
    assert (v.codec, v.payload_type, v.clock_rate, v.control, v.framerate) == (
        Codec.H264, 96, 90_000, "trackID=1", 25.0)
    assert v.fmtp["packetization-mode"] == "1"


def test_sdp_of_an_h265_camera_without_a_frame_rate() -> None:
    d = parse_sdp(b"v=0\nm=video 0 RTP/AVP 98\na=rtpmap:98 H265/90000\n"
                  b"a=control:rtsp://10.0.0.6/sub/track1\n")
    assert d.video is not None
    assert (d.video.codec, d.video.framerate, d.video.control) == (
        Codec.H265, None, "rtsp://10.0.0.6/sub/track1")


@pytest.mark.parametrize(("body", "reason"), [
    (b"\xff\xfe", "sdp_encoding"),
    (b"v=0\nthis is not sdp\n", "sdp_line"),
    (b"v=0\nm=video\n", "sdp_media"),
    (b"v=0\ns=nothing\n", "sdp_no_media"),
    (b"v=0\nm=video 0 RTP/AVP 96\na=rtpmap:x H264/90000\n", "sdp_rtpmap"),
    (b"v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/0\n", "sdp_rtpmap"),
])
def test_sdp_rejections(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        parse_sdp(body)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("base", "control", "url"), [
    ("rtsp://c/sub/", "trackID=1", "rtsp://c/sub/trackID=1"),
    ("rtsp://c/sub", "trackID=1", "rtsp://c/sub/trackID=1"),
    ("rtsp://c/sub/", "*", "rtsp://c/sub/"),
    ("rtsp://c/sub/", None, "rtsp://c/sub/"),
    ("rtsp://c/sub/", "rtsp://d/x", "rtsp://d/x"),
])
def test_control_urls(base: str, control: str | None, url: str) -> None:
    assert control_url(base, control) == url


def test_digest_answer_is_rfc_2617s() -> None:
    # RFC 2617 §3.5's example, with its method and URI.
    c = auth.parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                             'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                             'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    header = auth.digest(c, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", nc=1,
                         cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header
    params = auth.parse_challenge(header).params
    assert auth.expected_digest(params, "Circle Of Life", "GET", "testrealm@host.com") == (
        "6629fae49393a05397450978507c4ef1")


def test_digest_without_qop() -> None:
    c = auth.parse_challenge('Digest realm="cam", nonce="abc"')
    header = auth.digest(c, "admin", "pw", "DESCRIBE", "rtsp://c/sub")
    ha1 = hashlib.md5(b"admin:cam:pw").hexdigest()  # noqa: S324 - RTSP Digest is MD5
    ha2 = hashlib.md5(b"DESCRIBE:rtsp://c/sub").hexdigest()  # noqa: S324
    want = hashlib.md5(f"{ha1}:abc:{ha2}".encode()).hexdigest()  # noqa: S324
    assert f'response="{want}"' in header
    assert "qop" not in header


@pytest.mark.parametrize(("challenges", "reason"), [
    (("Digest realm=\"x\"",), "auth_scheme"),  # digest without a nonce falls to... none
    (("Bearer token=1",), "auth_scheme"),
    (("Digest realm=\"x, nonce=\"y\"",), "auth_challenge"),
    (("Digest =x",), "auth_challenge"),
])
def test_challenges_we_cannot_answer(challenges: tuple[str, ...], reason: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        auth.pick(challenges)
    assert caught.value.reason in (reason, "auth_challenge")


def test_basic_login() -> None:
    assert auth.basic("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="


# Any bytes: a value or a clear rejection, never another exception.
_FUZZ = settings(max_examples=200, deadline=None)


@_FUZZ
@given(st.binary(max_size=64))
def test_any_bytes_as_rtp(data: bytes) -> None:
    try:
        p = parse_rtp(data)
    except PayloadRejected:
        return
    assert 12 <= p.payload_start <= p.payload_end <= len(data)


@_FUZZ
@given(st.sampled_from(list(Codec)), st.binary(max_size=48))
def test_any_bytes_as_a_payload(codec: Codec, data: bytes) -> None:
    try:
        view = read_payload(codec, data)
    except PayloadRejected:
        return
    assert view.fragment in Fragment


@_FUZZ
@given(st.binary(max_size=300) | st.builds(lambda b: b"RTSP/1.0 " + b, st.binary(max_size=300)))
def test_any_bytes_as_an_rtsp_answer(data: bytes) -> None:
    try:
        parsed = parse_response(data)
    except PayloadRejected:
        return
    if parsed is not None:
        assert 0 < parsed[1] <= len(data)


@_FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_as_sdp(data: bytes) -> None:
    try:
        parse_sdp(data)
    except PayloadRejected:
        return


@_FUZZ
@given(st.lists(st.text(max_size=60), max_size=3).map(tuple))
def test_any_challenge(challenges: tuple[str, ...]) -> None:
    try:
        c = auth.pick(challenges)
    except PayloadRejected:
        return
    assert c.scheme in ("digest", "basic")


@_FUZZ
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
                          st.binary(min_size=0, max_size=8)), max_size=40))
def test_any_packets_into_stream_health(packets: list[tuple[int, int, bytes]]) -> None:
    h = StreamHealth(Codec.H265, 90_000, now=0.0)
    for n, (seq, ts, payload) in enumerate(packets):
        pkt = rtp(seq, ts, payload)
        try:
            h.packet(n * 0.01, parse_rtp(pkt), pkt)
        except PayloadRejected:
            continue
    snap = h.snapshot(1.0)
    assert snap.lost >= 0 and snap.bitrate_bps >= 0
    assert snap.fps is None or snap.fps > 0
