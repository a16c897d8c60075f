"""Camera clips for the simulator: short H.264 / H.265 loops encoded with PyAV on first use
into a cache folder (never committed), then cut into RTP packets once (RFC 6184 / RFC 7798:
single NAL unit packets and FU fragments) so serving a frame only rewrites numbers."""

from __future__ import annotations

import base64
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

# Payload per RTP packet: an Ethernet MTU less IP, TCP, interleave and RTP headers.
MAX_PAYLOAD = 1400
CLOCK_RATE = 90_000
# Bumped whenever a content's picture changes, so clips cached with the old look are not
# served (2: the scene got its building, and `moved` was added).
LOOK = 2


@dataclass(frozen=True, slots=True)
class ClipSpec:
    codec: str  # "h264" or "h265"
    width: int = 320
    height: int = 180
    fps: int = 25
    seconds: int = 2
    bitrate: int = 256_000  # bits/s: a camera's sub-stream
    # What the camera sees: scene, or a picture fault: black, frozen, blurred, covered,
    # night (dark, grainy IR: must not read as black), moved (the scene seen turned and
    # shifted: a camera knocked off its aim).
    content: str = "scene"

    @property
    def key(self) -> str:
        return (f"v{LOOK}-{self.codec}-{self.width}x{self.height}-{self.fps}fps-{self.seconds}s-"
                f"{self.bitrate // 1000}k-{self.content}")


@dataclass(frozen=True, slots=True)
class Clip:
    spec: ClipSpec
    frames: tuple[tuple[bytes, ...], ...]  # access units, each its NAL units (no start codes)

    def parameter_sets(self) -> dict[int, bytes]:
        """NAL type -> unit, for the SDP: H.264 SPS 7 / PPS 8, H.265 VPS 32 / SPS 33 / PPS 34."""
        found: dict[int, bytes] = {}
        for nal in self.frames[0]:
            t = nal_type(self.spec.codec, nal)
            if t in (7, 8, 32, 33, 34):
                found.setdefault(t, nal)
        return found


def nal_type(codec: str, nal: bytes) -> int:
    return nal[0] & 0x1F if codec == "h264" else (nal[0] >> 1) & 0x3F


def cache_dir() -> Path:
    base = os.environ.get("COMPOUND_CLIP_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "compound-gateway"


def load_clip(spec: ClipSpec, folder: Path | None = None) -> Clip:
    """The clip from the cache, encoding it first if it is not there yet."""
    folder = folder or cache_dir()
    path = folder / f"{spec.key}.au"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        frames = _encode(spec)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_pack(frames))
        tmp.replace(path)
    return Clip(spec, _unpack(path.read_bytes()))


def _pack(frames: list[list[bytes]]) -> bytes:
    out = bytearray()
    for nals in frames:
        out += struct.pack(">I", len(nals))
        for nal in nals:
            out += struct.pack(">I", len(nal)) + nal
    return bytes(out)


def _unpack(data: bytes) -> tuple[tuple[bytes, ...], ...]:
    frames: list[tuple[bytes, ...]] = []
    i = 0
    while i < len(data):
        (count,) = struct.unpack_from(">I", data, i)
        i += 4
        nals = []
        for _ in range(count):
            (size,) = struct.unpack_from(">I", data, i)
            nals.append(data[i + 4 : i + 4 + size])
            i += 4 + size
        frames.append(tuple(nals))
    return tuple(frames)


def split_annex_b(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    out: list[bytes] = []
    starts: list[int] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        nal = data[start:end]
        while nal.endswith(b"\x00") and n + 1 < len(starts):
            nal = nal[:-1]  # the leading zero of a four-byte start code
        if nal:
            out.append(nal)
    return out


def _encode(spec: ClipSpec) -> list[list[bytes]]:
    import av  # the camera extra; the simulator needs it only to build a clip
    import numpy as np

    name = "libx264" if spec.codec == "h264" else "libx265"
    ctx = av.CodecContext.create(name, "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = spec.width, spec.height, "yuv420p"
    ctx.framerate = Fraction(spec.fps)
    ctx.time_base = Fraction(1, spec.fps)
    ctx.bit_rate = spec.bitrate
    ctx.gop_size = spec.fps
    # One keyframe a second with its parameter sets in band, no B-frames: what a camera
    # sub-stream sends. x265 is told to stay quiet.
    if spec.codec == "h264":
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                       "x264-params": f"keyint={spec.fps}:min-keyint={spec.fps}:bframes=0"}
    else:
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                       "x265-params": f"keyint={spec.fps}:min-keyint={spec.fps}:bframes=0:"
                                      "repeat-headers=1:log-level=error"}
    rng = np.random.default_rng(7)
    h, w = spec.height, spec.width
    frames: list[list[bytes]] = []
    total = spec.fps * spec.seconds
    for n in range(total + 1):
        packets = []
        if n < total:
            y = _picture(spec.content, 0 if spec.content == "frozen" else n, h, w, rng)
            u = np.full((h // 2, w // 2), 128, dtype=np.uint8)
            yuv = np.concatenate([y.reshape(-1), u.reshape(-1), u.reshape(-1)])
            frame = av.VideoFrame.from_ndarray(yuv.reshape(h * 3 // 2, w), format="yuv420p")
            frame.pts = n
            packets = ctx.encode(frame)
        else:
            packets = ctx.encode(None)
        for packet in packets:
            frames.append(split_annex_b(bytes(packet)))
    return frames


def _picture(content: str, n: int, h: int, w: int, rng: Any) -> Any:
    """Frame `n`'s luma plane for a content kind (numpy and OpenCV, the camera extra).
    The scene is a building's front that stands still (walls, windows, a door) above a
    road where a light pans and a bright bar passes: what a fixed camera sees."""
    import cv2
    import numpy as np

    base = np.tile(np.linspace(30, 220, w, dtype=np.uint8), (h, 1))
    scene = np.roll(base, 4 * n, axis=1)
    bar = (n * 7) % max(1, h - 20)
    scene[bar : bar + 20, :] = 240
    top = int(h * 0.68)
    scene[:top] = _facade(h, w)[:top]
    # Texture, so the bitrate and the edges are a real camera's; the same every frame
    # for a frozen picture.
    grain = (np.random.default_rng(11) if content == "frozen" else rng).integers(
        0, 24, size=(h, w), dtype=np.uint8)
    if content in ("scene", "frozen"):
        return scene ^ grain
    if content == "moved":  # turned 5 degrees and shifted an eighth across
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), 5.0, 1.0)
        turn[0, 2] += w / 8
        turn[1, 2] += h / 10
        return cv2.warpAffine(scene ^ grain, turn, (w, h), borderMode=cv2.BORDER_REFLECT)
    if content == "black":
        return (16 + rng.integers(0, 3, size=(h, w))).astype(np.uint8)
    if content == "blurred":
        return cv2.GaussianBlur(scene ^ grain, (0, 0), 5)
    if content == "covered":  # a hand over the lens: dark, a soft shading, no edges
        shade = np.tile(np.linspace(50, 90, h, dtype=np.float32)[:, None], (1, w))
        return cv2.GaussianBlur(shade, (0, 0), 9).astype(np.uint8)
    if content == "night":  # IR: dark, low contrast, heavy sensor grain
        ir = 18 + 0.3 * (scene ^ grain) + rng.normal(0, 9, size=(h, w))
        return np.clip(ir, 0, 255).astype(np.uint8)
    raise ValueError(f"no content {content!r}")


def _facade(h: int, w: int) -> Any:
    """A wall (150) with two rows of dark windows and a bright door, at any size."""
    import numpy as np

    front = np.full((h, w), 150, dtype=np.uint8)
    for top, bottom in ((0.1, 0.3), (0.4, 0.6)):
        for left in (0.06, 0.24, 0.62, 0.8):
            front[int(top * h) : int(bottom * h), int(left * w) : int((left + 0.1) * w)] = 50
    front[:, int(0.45 * w) : int(0.52 * w)] = 200
    return front


@dataclass(frozen=True, slots=True)
class PacketisedFrame:
    blob: bytes  # interleaved RTP packets ('$', channel 0, length, header, payload)
    headers: tuple[int, ...]  # offset of each RTP header in `blob`
    keyframe: bool


def packetise(clip: Clip, payload_type: int = 96) -> tuple[PacketisedFrame, ...]:
    """Every frame of the clip as interleaved RTP with seq/timestamp/SSRC left at zero."""
    codec = clip.spec.codec
    out = []
    for nals in clip.frames:
        payloads: list[bytes] = []
        for nal in nals:
            payloads += _fragments(codec, nal)
        blob = bytearray()
        offsets = []
        for n, payload in enumerate(payloads):
            marker = 0x80 if n == len(payloads) - 1 else 0
            blob += b"$\x00" + struct.pack(">H", 12 + len(payload))
            offsets.append(len(blob))
            blob += bytes((0x80, marker | payload_type)) + bytes(10) + payload
        key = any(nal_type(codec, nal) in (5, 16, 17, 18, 19, 20, 21) for nal in nals)
        out.append(PacketisedFrame(bytes(blob), tuple(offsets), key))
    return tuple(out)


def _fragments(codec: str, nal: bytes) -> list[bytes]:
    if len(nal) <= MAX_PAYLOAD:
        return [nal]
    if codec == "h264":
        head, body = nal[:1], nal[1:]
        indicator = bytes(((head[0] & 0xE0) | 28,))
        t = head[0] & 0x1F
    else:
        head, body = nal[:2], nal[2:]
        indicator = bytes(((head[0] & 0x81) | (49 << 1), head[1]))
        t = (head[0] >> 1) & 0x3F
    chunk = MAX_PAYLOAD - len(indicator) - 1
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    out = []
    for n, piece in enumerate(pieces):
        flags = (0x80 if n == 0 else 0) | (0x40 if n == len(pieces) - 1 else 0)
        out.append(indicator + bytes((flags | t,)) + piece)
    return out


def sdp_fmtp(clip: Clip, payload_type: int = 96) -> str:
    sets = clip.parameter_sets()

    def b64(t: int) -> str:
        return base64.b64encode(sets[t]).decode("ascii") if t in sets else ""

    if clip.spec.codec == "h264":
        sps = sets.get(7, b"\x67\x42\x00\x1e")
        profile = sps[1:4].hex().upper()
        return (f"a=fmtp:{payload_type} packetization-mode=1;profile-level-id={profile};"
                f"sprop-parameter-sets={b64(7)},{b64(8)}")
    return f"a=fmtp:{payload_type} sprop-vps={b64(32)};sprop-sps={b64(33)};sprop-pps={b64(34)}"
