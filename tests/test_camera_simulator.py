"""The camera simulator read by a client nobody here wrote: FFmpeg's RTSP, through PyAV,
logs in with Digest and with Basic, plays the H.264 and H.265 loops over TCP and decodes
them; the simulator's own bookkeeping (slots, faults) is checked alongside."""

from __future__ import annotations

import asyncio

import av
import pytest

from simulators.camera_clips import ClipSpec, load_clip, packetise, split_annex_b
from simulators.cameras import CameraFarm


def _read(url: str, packets: int) -> tuple[str, int, int, int]:
    """What FFmpeg sees: codec, width, packets demuxed, frames decoded."""
    container = av.open(url, options={"rtsp_transport": "tcp", "stimeout": "5000000"},
                        timeout=10)
    try:
        stream = container.streams.video[0]
        n = decoded = 0
        for packet in container.demux(stream):
            n += 1
            decoded += len(packet.decode())
            if n >= packets:
                break
        return stream.codec_context.name, stream.codec_context.width, n, decoded
    finally:
        container.close()


@pytest.mark.parametrize(("codec", "auth", "name"), [
    ("h264", "digest", "h264"), ("h265", "basic", "hevc"), ("h264", "basic", "h264"),
    ("h265", "digest", "hevc"),
])
async def test_ffmpeg_plays_and_decodes_a_simulated_camera(codec: str, auth: str,
                                                           name: str) -> None:
    farm = CameraFarm.build(1, ClipSpec(codec), username="admin", password="s3cret",
                            auth=auth)
    async with farm:
        cam = farm["cam-001"]
        url = f"rtsp://admin:s3cret@127.0.0.1:{cam.port}/sub"
        got = await asyncio.to_thread(_read, url, 60)  # past the loop's end: 50 frames
        assert got[0] == name
        assert got[1] == 320
        assert got[2] == 60
        assert got[3] >= 55  # every frame decodes, bar the decoder's own delay
        for _ in range(50):
            if not cam.sessions:
                break
            await asyncio.sleep(0.02)
        assert cam.sessions == set()  # FFmpeg's TEARDOWN gave the slot back
        assert cam.requests["PLAY"] == 1


async def test_ffmpeg_is_refused_a_wrong_password() -> None:
    farm = CameraFarm.build(1, ClipSpec("h264"), username="admin", password="s3cret")
    async with farm:
        url = f"rtsp://admin:wrong@127.0.0.1:{farm['cam-001'].port}/sub"
        with pytest.raises(av.error.HTTPUnauthorizedError):
            await asyncio.to_thread(_read, url, 5)
        assert "PLAY" not in farm["cam-001"].requests


async def test_a_camera_has_few_stream_slots() -> None:
    farm = CameraFarm.build(1, ClipSpec("h264"))
    async with farm:
        cam = farm["cam-001"]
        cam.max_sessions = 1
        url = f"rtsp://127.0.0.1:{cam.port}/sub"
        first = await asyncio.to_thread(av.open, url, options={"rtsp_transport": "tcp"},
                                        timeout=10)
        try:
            with pytest.raises(av.error.FFmpegError):
                await asyncio.to_thread(_read, url, 5)  # 453 Not Enough Bandwidth
        finally:
            first.close()


def test_clips_are_packetised_with_fragments_and_keyframes() -> None:
    for codec in ("h264", "h265"):
        clip = load_clip(ClipSpec(codec))
        frames = packetise(clip)
        assert len(frames) == 50
        assert [n for n, f in enumerate(frames) if f.keyframe] == [0, 25]
        fu = 28 if codec == "h264" else 49
        kinds = set()
        for f in frames:
            for off in f.headers:
                b = f.blob[off + 12]
                kinds.add(b & 0x1F if codec == "h264" else (b >> 1) & 0x3F)
        assert fu in kinds  # keyframes are larger than one packet


@pytest.mark.parametrize(("stream", "units"), [
    (b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce", [b"\x67\x42", b"\x68\xce"]),
    (b"\x00\x00\x01\x65\x88\x00\x00\x00\x01\x41\x9a", [b"\x65\x88", b"\x41\x9a"]),
    (b"", []),
])
def test_annex_b_split(stream: bytes, units: list[bytes]) -> None:
    assert split_annex_b(stream) == units


async def test_control_lines_switch_faults() -> None:
    farm = CameraFarm.build(3, ClipSpec("h264"))
    async with farm:
        assert await farm.control("cam-002 stall on") == "ok"
        assert await farm.control("* low_fps 5") == "ok"
        assert await farm.control("cam-009 stall on") == "error: no camera cam-009"
        assert await farm.control("cam-001 melt on") == "error: no fault melt"
        assert (await farm.control("nonsense")).startswith("error")
        assert farm["cam-002"].faults.stall and not farm["cam-001"].faults.stall
        assert {c.faults.low_fps for c in farm.cameras.values()} == {5.0}
        assert await farm.control("cam-003 refuse on") == "ok"
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", farm["cam-003"].port)
        assert await farm.control("cam-003 refuse off") == "ok"
        _, writer = await asyncio.open_connection("127.0.0.1", farm["cam-003"].port)
        writer.close()
        await writer.wait_closed()
