"""The next keyframe of a stream, taken from its RTP as one Annex B access unit (FU
fragments joined, aggregates split), for picture health: only when asked for, bounded in
size, and decoded alone by one decoder shared per codec."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.rtsp.rtp import Codec, RtpPacket

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

_START = b"\x00\x00\x00\x01"
# A 1080p keyframe is 100-400 KiB; past this it is not a keyframe worth decoding.
MAX_KEYFRAME_BYTES = 2 * 1024 * 1024
_H264_KEY = frozenset({5})
_H265_KEY = frozenset({16, 17, 18, 19, 20, 21})
# Slices of a picture that is not a keyframe. Every slice of a picture has the same type
# (H.264 7.4.1.2.4, H.265 7.4.2.2), so the first one tells the whole access unit: the
# rest of its packets are passed over, not copied (a P-frame is most of what is read
# while a keyframe is awaited).
_H264_OTHER = frozenset(range(1, 5))
_H265_OTHER = frozenset(range(16))


class KeyframeGrabber:
    """`arm()`, then `feed()` every RTP packet: the first complete access unit holding an
    IDR (H.264) or IRAP (H.265) picture comes back as bytes, and the grabber disarms."""

    def __init__(self, codec: Codec, max_bytes: int = MAX_KEYFRAME_BYTES) -> None:
        self.codec = codec
        self.max_bytes = max_bytes
        self.armed = False
        self.dropped = 0  # access units given up: a lost fragment, or too large
        self._ts: int | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._key = False
        self._broken = False
        self._skip = False  # this access unit is a picture that is not a keyframe
        self._other = _H264_OTHER if codec is Codec.H264 else _H265_OTHER
        self._in_fu = False
        self._fu_type = 0
        self._fu_parts: list[bytes] = []
        self._next_seq: int | None = None

    def arm(self) -> None:
        self.armed = True
        self._next_seq = None
        self._reset(None)

    def _reset(self, ts: int | None) -> None:
        self._ts, self._parts, self._size = ts, [], 0
        self._key = self._broken = self._in_fu = self._skip = False

    def feed(self, pkt: RtpPacket, data: bytes | bytearray) -> bytes | None:
        if not self.armed:
            return None
        done: bytes | None = None
        gap = self._next_seq is not None and pkt.seq != self._next_seq
        self._next_seq = (pkt.seq + 1) & 0xFFFF
        if pkt.timestamp != self._ts:
            if gap:
                self._broken = True  # the lost packet may have ended this unit
            done = self._finish()
            self._reset(pkt.timestamp)
            if done is not None:
                return done
        if self._skip:
            if pkt.marker:
                self._reset(None)
            return None
        if gap:
            self._broken = True  # a packet of this unit was lost: never decode half
        self._payload(bytes(data[pkt.payload_start : pkt.payload_end]))
        if pkt.marker:
            done = self._finish()
            self._reset(None)
        return done

    def _finish(self) -> bytes | None:
        if self._skip or not self._parts:
            return None
        if self._in_fu or self._broken or self._size > self.max_bytes:
            self.dropped += 1
            return None
        if not self._key:
            return None
        self.armed = False
        return b"".join(self._parts)

    def _add(self, unit: bytes, nal_type: int) -> None:
        if nal_type in self._other:
            self._pass_over()
            return
        self._size += len(unit) + 4
        if self._size > self.max_bytes:
            self._broken = True
            return
        self._parts += (_START, unit)
        keys = _H264_KEY if self.codec is Codec.H264 else _H265_KEY
        self._key = self._key or nal_type in keys

    def _pass_over(self) -> None:
        self._skip = True
        self._parts, self._fu_parts, self._in_fu = [], [], False

    def _payload(self, p: bytes) -> None:
        if not p or self._broken:
            return
        h264 = self.codec is Codec.H264
        if h264:
            t = p[0] & 0x1F
            head = 1
        else:
            if len(p) < 2:
                self._broken = True
                return
            t = (p[0] >> 1) & 0x3F
            head = 2
        aggregate, fu = (24, 28) if h264 else (48, 49)
        if t == fu:
            self._fragment(p, h264)
        elif t == aggregate:
            i = head
            while i + 2 <= len(p):
                size = (p[i] << 8) | p[i + 1]
                unit = p[i + 2 : i + 2 + size]
                if size < head or len(unit) < size:
                    self._broken = True
                    return
                self._add(unit, unit[0] & 0x1F if h264 else (unit[0] >> 1) & 0x3F)
                if self._skip:
                    return
                i += 2 + size
        elif (h264 and 1 <= t <= 23) or (not h264 and t < 48):
            if self._in_fu:
                self._broken = True
            self._add(p, t)
        else:
            self._broken = True

    def _fragment(self, p: bytes, h264: bool) -> None:
        need = 2 if h264 else 3
        if len(p) < need:
            self._broken = True
            return
        fu = p[need - 1]
        t = fu & (0x1F if h264 else 0x3F)
        body = p[need:]
        if fu & 0x80:  # the first fragment: rebuild the unit's own header
            if self._in_fu:
                self._broken = True
            if t in self._other:
                self._pass_over()
                return
            header = bytes(((p[0] & 0xE0) | t,)) if h264 else bytes(
                (((p[0] & 0x81) | (t << 1)), p[1]))
            self._in_fu = True
            self._fu_type = t
            self._fu_parts = [header, body]
        elif not self._in_fu:
            self._broken = True  # its first fragment was lost
            return
        else:
            self._fu_parts.append(body)
        if fu & 0x40:
            self._in_fu = False
            self._add(b"".join(self._fu_parts), self._fu_type)
            self._fu_parts = []


class KeyframeDecoder:
    """One PyAV decoder per codec, shared by every camera: a keyframe decodes alone."""

    def __init__(self) -> None:
        self._contexts: dict[Codec, Any] = {}

    def luma(self, codec: Codec, access_unit: bytes) -> npt.NDArray[np.uint8] | None:
        """The decoded picture's luma plane (a view, not a copy), or None if it did not
        decode."""
        import av  # the camera extra
        import numpy as np

        ctx = self._contexts.get(codec)
        if ctx is None:
            ctx = av.CodecContext.create("h264" if codec is Codec.H264 else "hevc", "r")
            # One thread: a picture decoded alone gains nothing from frame threads, and
            # slice threads cost more CPU in all (1080p H.264 ~6 ms, 720p H.265 ~13 ms).
            ctx.thread_count = 1
            self._contexts[codec] = ctx
        # Each keyframe starts afresh: shared by many cameras, the decoder must not take
        # one camera's picture for the next of another's (an H.265 CRA with the same
        # picture count as the last one would be dropped as a duplicate).
        ctx.flush_buffers()
        try:
            frames = ctx.decode(av.Packet(access_unit))
            if not frames:  # a decoder that holds a frame back: flush it out
                frames = ctx.decode(None)
        except av.error.FFmpegError:
            return None
        finally:
            ctx.flush_buffers()
        if not frames:
            return None
        plane: Any = frames[-1].planes[0]  # a buffer of line_size x height bytes
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        luma: npt.NDArray[np.uint8] = rows[:, : plane.width]
        return luma
