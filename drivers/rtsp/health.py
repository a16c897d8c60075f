"""Stream health from RTP framing alone: frames (RTP timestamps), bytes, sequence gaps,
keyframe interval and silence. Nothing is decoded; time is passed in."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from drivers.rtsp.rtp import Codec, Reassembly, RtpPacket, read_payload

# A jump this large is a restarted sender (new SSRC or a camera reboot), not lost packets.
_SEQ_RESTART = 3000
# Frames kept for the windows: 5 s of 60 fps is enough for any camera we watch.
_MAX_FRAMES = 512


class RateWindow:
    """Amounts over the last `window_s` seconds of arrival time, bounded in memory."""

    def __init__(self, window_s: float, maxlen: int = _MAX_FRAMES) -> None:
        self.window_s = window_s
        self._items: deque[tuple[float, float]] = deque(maxlen=maxlen)
        self._sum = 0.0

    def add(self, now: float, amount: float) -> None:
        items = self._items
        if len(items) == items.maxlen:
            self._sum -= items[0][1]
        items.append((now, amount))
        self._sum += amount
        self._prune(now)

    def _prune(self, now: float) -> None:
        items = self._items
        edge = now - self.window_s
        while items and items[0][0] <= edge:
            self._sum -= items.popleft()[1]

    def total(self, now: float) -> float:
        self._prune(now)
        return self._sum if self._items else 0.0

    def per_second(self, now: float) -> float:
        return self.total(now) / self.window_s


class FrameClock:
    """Frame rate from the RTP timestamps of the last frames: the sender's own clock, so
    network jitter and TCP bursts do not move it."""

    def __init__(self, clock_rate: int, window: int = 50) -> None:
        self.clock_rate = clock_rate
        self._stamps: deque[int] = deque(maxlen=window)
        self._unwrapped = 0
        self._last: int | None = None

    def frame(self, timestamp: int) -> None:
        if self._last is not None:
            step = (timestamp - self._last) & 0xFFFFFFFF
            if step >= 0x80000000:  # went backwards: a restart; start over
                self._stamps.clear()
                step = 0
            self._unwrapped += step
        self._last = timestamp
        self._stamps.append(self._unwrapped)

    def fps(self) -> float | None:
        s = self._stamps
        if len(s) < 2 or s[-1] == s[0]:
            return None
        return (len(s) - 1) * self.clock_rate / (s[-1] - s[0])


class SeqTracker:
    """RTP sequence numbers: packets lost in gaps, late or repeated ones, and restarts."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.lost = 0
        self.late = 0
        self.restarts = 0

    def packet(self, seq: int) -> None:
        last = self.last
        if last is None:
            self.last = seq
            return
        gap = (seq - last - 1) & 0xFFFF
        if gap == 0:
            self.last = seq
        elif gap >= 0xFFFF - _SEQ_RESTART:  # a little behind: late or repeated
            self.late += 1
        elif gap > _SEQ_RESTART:
            self.restarts += 1
            self.last = seq
        else:
            self.lost += gap
            self.last = seq


class Snapshot(NamedTuple):
    fps: float | None
    bitrate_bps: float
    packets: int
    frames: int
    lost: int
    keyframe_interval_s: float | None
    silent_s: float
    broken_units: int
    rejected: int


class StreamHealth:
    """Everything measured on one camera's stream, fed one RTP packet at a time."""

    def __init__(self, codec: Codec, clock_rate: int, now: float,
                 window_s: float = 5.0) -> None:
        self.codec = codec
        self._h264 = codec is Codec.H264
        self.clock_rate = clock_rate
        self.seq = SeqTracker()
        self.reassembly = Reassembly()
        self.frame_clock = FrameClock(clock_rate)
        self.bytes = RateWindow(window_s)
        self.frames_seen = RateWindow(window_s)
        self.packets = 0
        self.frames = 0
        self.rejected = 0  # payloads we could not read (counted, skipped)
        self.last_packet = now
        self.started = now
        self._timestamp: int | None = None
        self._frame_bytes = 0
        self._frame_key = False
        self._last_key_ts: int | None = None
        self._key_interval: float | None = None
        self.p_sizes: deque[int] = deque(maxlen=50)  # bytes of the latest P-frames

    def packet(self, now: float, pkt: RtpPacket, data: bytes | bytearray) -> None:
        self.packets += 1
        self.last_packet = now
        # One unpacking instead of a named lookup per field: this runs for every packet.
        _, _, number, timestamp, _, start, end = pkt
        seq = self.seq
        last = seq.last
        if last is not None and number == (last + 1) & 0xFFFF:
            seq.last = number  # the usual case, without a call
        else:
            seq.packet(number)
        if timestamp != self._timestamp:
            self._close_frame(now)
            self._timestamp = timestamp
            self.frame_clock.frame(timestamp)
        self._frame_bytes += end - start
        # Most packets are the middle or last fragments of a unit already open: read
        # their FU header in place and go on. Everything else takes the full reading.
        if end - start >= 3 and self.reassembly.open:
            b = data[start]
            if self._h264:
                fu = data[start + 1] if b & 0x1F == 28 else 0x80
            else:
                fu = data[start + 2] if (b >> 1) & 0x3F == 49 else 0x80
            if not fu & 0x80:
                if fu & 0x40:
                    self.reassembly.open = False
                return
        view = read_payload(self.codec, data, start, end)
        self.reassembly.feed(view.fragment)
        if not self._frame_key:
            for nal in view.starts:
                if nal.keyframe:
                    self._frame_key = True
                    break

    def _close_frame(self, now: float) -> None:
        if self._timestamp is None:
            return
        self.frames += 1
        self.frames_seen.add(now, 1.0)
        self.bytes.add(now, self._frame_bytes)
        if not self._frame_key:
            self.p_sizes.append(self._frame_bytes)
        else:
            if self._last_key_ts is not None:
                step = (self._timestamp - self._last_key_ts) & 0xFFFFFFFF
                if step < 0x80000000:
                    self._key_interval = step / self.clock_rate
            self._last_key_ts = self._timestamp
        self._frame_bytes = 0
        self._frame_key = False

    def p_median(self) -> float | None:
        """The median size of the latest P-frames: it collapses when the picture freezes."""
        if len(self.p_sizes) < 10:
            return None
        ordered = sorted(self.p_sizes)
        return float(ordered[len(ordered) // 2])

    def snapshot(self, now: float) -> Snapshot:
        covered = min(self.bytes.window_s, max(now - self.started, 1e-9))
        return Snapshot(
            fps=self.frame_clock.fps() if now - self.last_packet < self.bytes.window_s
            else 0.0,
            bitrate_bps=8.0 * self.bytes.total(now) / covered,
            packets=self.packets,
            frames=self.frames,
            lost=self.seq.lost,
            keyframe_interval_s=self._key_interval,
            silent_s=now - self.last_packet,
            broken_units=self.reassembly.broken,
            rejected=self.rejected,
        )
