"""The parts of a DESCRIBE answer's SDP (RFC 8866) the stream monitor needs: the video
track's codec, payload type, clock rate, control URL and advertised frame rate."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.rtsp.rtp import Codec
from gateway.errors import PayloadRejected

_CODECS = {"H264": Codec.H264, "H265": Codec.H265, "HEVC": Codec.H265}


@dataclass(frozen=True, slots=True)
class VideoTrack:
    codec: Codec
    payload_type: int
    clock_rate: int
    control: str | None
    framerate: float | None = None
    fmtp: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Description:
    control: str | None  # session-level a=control
    video: VideoTrack | None  # the first H.264 / H.265 video track
    media: tuple[str, ...]  # every m= line's media type, in order


def parse_sdp(body: bytes) -> Description:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadRejected("sdp_encoding", str(exc)) from None
    session_control: str | None = None
    media: list[str] = []
    found: VideoTrack | None = None
    current: dict[str, str] | None = None
    tracks: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise PayloadRejected("sdp_line", line[:60])
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 4:
                raise PayloadRejected("sdp_media", value[:60])
            media.append(parts[0])
            current = {"media": parts[0], "formats": " ".join(parts[3:])}
            tracks.append(current)
        elif kind == "a":
            name, _, attr = value.partition(":")
            if current is None:
                if name == "control":
                    session_control = attr
            elif name in ("rtpmap", "fmtp", "control", "framerate"):
                current.setdefault(name, attr)
    for track in tracks:
        if track["media"] == "video" and found is None:
            found = _video(track)
    if not media:
        raise PayloadRejected("sdp_no_media", "no m= line")
    return Description(session_control, found, tuple(media))


def _video(track: dict[str, str]) -> VideoTrack | None:
    rtpmap = track.get("rtpmap")
    if rtpmap is None:
        return None
    pt_text, _, encoding = rtpmap.partition(" ")
    name, _, rest = encoding.strip().partition("/")
    codec = _CODECS.get(name.upper())
    if codec is None:
        return None
    try:
        payload_type = int(pt_text)
        clock_rate = int(rest.partition("/")[0])
    except ValueError:
        raise PayloadRejected("sdp_rtpmap", rtpmap[:60]) from None
    if not 0 <= payload_type <= 127 or clock_rate <= 0:
        raise PayloadRejected("sdp_rtpmap", rtpmap[:60])
    fmtp: dict[str, str] = {}
    raw_fmtp = track.get("fmtp")
    if raw_fmtp:
        for item in raw_fmtp.partition(" ")[2].split(";"):
            key, _, val = item.strip().partition("=")
            if key:
                fmtp[key.lower()] = val
    framerate: float | None = None
    if "framerate" in track:
        try:
            framerate = float(track["framerate"])
        except ValueError:
            framerate = None
        if framerate is not None and not 0 < framerate <= 1000:
            framerate = None
    return VideoTrack(codec, payload_type, clock_rate, track.get("control"), framerate, fmtp)


def control_url(base: str, control: str | None) -> str:
    """Where SETUP goes: an absolute control URL as is, `*` or none the base, else joined."""
    if not control or control == "*":
        return base
    if control.lower().startswith(("rtsp://", "rtsps://")):
        return control
    return base.rstrip("/") + "/" + control.lstrip("/")
