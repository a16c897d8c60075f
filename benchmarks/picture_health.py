"""Where picture health spends its CPU, per sample and for the site (100 cameras, one
keyframe each every 15 s), without a network: the packets a camera's monitor reads while
its keyframe is awaited, the keyframe's decode, and the figures measured on it.

    .venv/bin/python benchmarks/picture_health.py [--codec h264] [--width 1920]
        [--height 1080] [--bitrate 4000000] [--rounds 60]

The keyframes are decoded twice over: from the simulator's clip (x264/x265 `ultrafast`,
no deblocking) and from a camera-like encode of the same scene (x264 `veryfast` with
CABAC and the deblocking filter, as camera encoders send, or x265 `fast`). Each round
takes every part once, in turn, so the machine's load weighs on all of them alike."""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.rtsp.keyframe import KeyframeDecoder, KeyframeGrabber
from drivers.rtsp.picture import measure
from drivers.rtsp.rtp import Codec, RtpPacket, parse_rtp
from simulators.camera_clips import ClipSpec, _picture, load_clip, packetise, split_annex_b

SAMPLES_PER_S = 100 / 15  # the site: 100 cameras, one keyframe each every 15 s


def camera_like(codec: str, width: int, height: int, bitrate: int) -> bytes:
    """One keyframe of the scene as a camera's encoder sends it (deblocking on)."""
    import av
    import numpy as np

    ctx: Any = av.CodecContext.create("libx264" if codec == "h264" else "libx265", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.framerate, ctx.time_base, ctx.bit_rate = Fraction(25), Fraction(1, 25), bitrate
    ctx.options = ({"preset": "veryfast", "profile": "high"} if codec == "h264"
                   else {"preset": "fast", "x265-params": "log-level=error"})
    rng = np.random.default_rng(7)
    y = _picture("scene", 0, height, width, rng)
    u = np.full((height // 2, width // 2), 128, dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(
        np.concatenate([y.reshape(-1), u.reshape(-1), u.reshape(-1)]).reshape(
            height * 3 // 2, width), format="yuv420p")
    frame.pts = 0
    out = b"".join(bytes(p) for p in ctx.encode(frame)) + b"".join(
        bytes(p) for p in ctx.encode(None))
    nals = split_annex_b(out)
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def rtp_of(clip_frames: Any) -> list[list[tuple[RtpPacket, bytes]]]:
    """Each frame's packets, numbered as they would arrive."""
    seq = 0
    out = []
    for n, frame in enumerate(clip_frames):
        blob = bytearray(frame.blob)
        for offset in frame.headers:
            struct.pack_into(">HI", blob, offset + 2, seq & 0xFFFF, n * 3600)
            seq += 1
        data = bytes(blob)
        pkts = []
        for i, offset in enumerate(frame.headers):
            end = frame.headers[i + 1] - 4 if i + 1 < len(frame.headers) else len(data)
            pkts.append((parse_rtp(data, offset, end), data))
        out.append(pkts)
    return out


def grab_once(codec: Codec, frames: list[list[tuple[RtpPacket, bytes]]], start: int
              ) -> tuple[float, int]:
    """CPU seconds to take the next keyframe when armed at frame `start`, and packets."""
    grabber = KeyframeGrabber(codec)
    grabber.arm()
    fed = 0
    t = time.process_time()
    n = start
    while True:
        for pkt, data in frames[n % len(frames)]:
            fed += 1
            if grabber.feed(pkt, data) is not None:
                return time.process_time() - t, fed
        n += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codec", choices=["h264", "h265"], default="h264")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--bitrate", type=int, default=4_000_000)
    p.add_argument("--rounds", type=int, default=60)
    args = p.parse_args()
    codec = Codec.H264 if args.codec == "h264" else Codec.H265
    clip = load_clip(ClipSpec(args.codec, args.width, args.height, 25, 2, args.bitrate))
    frames = rtp_of(packetise(clip))
    simulator_key = b"".join(b"\x00\x00\x00\x01" + n for n in clip.frames[0])
    camera_key = camera_like(args.codec, args.width, args.height, args.bitrate)
    decoder = KeyframeDecoder()
    lumas = {}
    for name, unit in (("simulator", simulator_key), ("camera", camera_key)):
        luma = decoder.luma(codec, unit)
        assert luma is not None, name
        lumas[name] = luma.copy()
    rng = random.Random(1)
    parts = {"grab": 0.0, "decode simulator": 0.0, "decode camera": 0.0, "measure": 0.0}
    packets = 0
    for _ in range(args.rounds):
        spent, fed = grab_once(codec, frames, rng.randrange(len(frames)))
        parts["grab"] += spent
        packets += fed
        for name, unit in (("simulator", simulator_key), ("camera", camera_key)):
            t = time.process_time()
            decoder.luma(codec, unit)
            parts[f"decode {name}"] += time.process_time() - t
        t = time.process_time()
        measure(lumas["camera"])
        parts["measure"] += time.process_time() - t
    print(f"{args.codec} {args.width}x{args.height} {args.bitrate // 1000} kbit/s, "
          f"{args.rounds} rounds; keyframes: simulator {len(simulator_key) // 1024} KiB, "
          f"camera-like {len(camera_key) // 1024} KiB")
    print(f"  grab: {packets / args.rounds:.0f} packets read per keyframe taken")
    for name, total in parts.items():
        ms = 1000 * total / args.rounds
        print(f"  {name:17s} {ms:6.2f} ms a sample, {ms * SAMPLES_PER_S / 10:5.2f}% of one "
              "core for 100 cameras every 15 s")
    whole = parts["grab"] + parts["decode camera"] + parts["measure"]
    print(f"  picture health, camera-like: {100 * whole / args.rounds * SAMPLES_PER_S:.2f}%"
          " of one core")


if __name__ == "__main__":
    main()
