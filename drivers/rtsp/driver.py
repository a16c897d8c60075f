"""The camera stream monitor: one RTSP connection per camera (the sub-stream the site file
names), RTP over TCP, measured from the framing alone. It raises `Unreachable` when the
stream is lost or stalls, `AuthError` on a refused login and `ProtocolError` on answers it
cannot read; its supervisor restarts it with backoff. Whatever ends a session, it sends
TEARDOWN and closes, so the camera's few stream slots are never held twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from drivers.rtsp import auth
from drivers.rtsp.config import CameraDevice
from drivers.rtsp.connection import RtspConnection
from drivers.rtsp.health import Snapshot, StreamHealth
from drivers.rtsp.keyframe import KeyframeDecoder, KeyframeGrabber
from drivers.rtsp.messages import Response, session_of
from drivers.rtsp.picture import Picture, PictureJudge, measure
from drivers.rtsp.rtp import Codec, RtpPacket
from drivers.rtsp.sdp import Description, VideoTrack, control_url, parse_sdp
from gateway.clock import Clock, SystemClock
from gateway.contract import Link, Sink
from gateway.errors import AuthError, PayloadRejected, ProtocolError, Unreachable
from gateway.events import Event, Reading, Severity

log = logging.getLogger("drivers.rtsp")

DRIVER = "rtsp"
_SHARED_DECODER = KeyframeDecoder()  # one decoder per codec for every camera


@dataclass(frozen=True, slots=True)
class Timing:
    connect_s: float = 5.0
    answer_s: float = 5.0
    # No RTP for this long is a lost stream: with `tick_s` it is reported within 5 s.
    stall_s: float = 3.0
    tick_s: float = 0.5
    report_s: float = 10.0  # readings per camera
    keepalive_s: float = 25.0  # used when the camera names no session timeout
    teardown_s: float = 1.0


class CameraDriver:
    """Watches one camera's stream; `snapshot()` is what it measured, for the metrics."""

    def __init__(self, device: CameraDevice, sink: Sink, *, password: str | None = None,
                 clock: Clock | None = None, timing: Timing | None = None,
                 decoder: KeyframeDecoder | None = None) -> None:
        self.device = device
        self.name = device.id
        self.sink = sink
        self.clock = clock or SystemClock()
        self.timing = timing or Timing()
        self._password = password
        parts = urlsplit(device.address)
        self.host = parts.hostname or ""
        self.port = parts.port or 554
        self.url = device.address
        self.health: StreamHealth | None = None
        self.streaming = False
        self._challenge: auth.Challenge | None = None
        self._nc = 0
        self._reference_fps: float | None = None
        self._degraded = False
        self._session: str | None = None
        self.decoder = decoder or _SHARED_DECODER
        self.picture = PictureJudge()
        # Whether the picture's state has been said since the gateway started. The judge
        # starts at ok; a bad state kept in the store from before a restart clears only
        # when ok is said, so the first settled ok is said once even though nothing changed.
        self._picture_told = False
        self.keyframe: bytes | None = None  # the latest keyframe taken (Annex B)
        self.keyframe_codec: Codec | None = None  # the codec it is in
        self._grabber: KeyframeGrabber | None = None
        self._fresh_keyframe = False
        self._judge_next = False  # the keyframe asked for is picture health's sample
        self._keyframe_waiters: list[asyncio.Future[None]] = []  # snapshots on demand
        # Cameras sample in turn, not all in the same second.
        self._phase = (zlib.crc32(device.id.encode()) % 1000) / 1000

    def last_keyframe(self) -> tuple[str, bytes] | None:
        """(codec, Annex B access unit) of the latest keyframe taken, for alarm snapshots."""
        if self.keyframe is None or self.keyframe_codec is None:
            return None
        return str(self.keyframe_codec), self.keyframe

    def picture_reading(self) -> tuple[str, float | None]:
        """(picture state, likeness to the reference view) for the gauges."""
        return str(self.picture.state), self.picture.likeness

    async def refresh_keyframe(self, timeout_s: float) -> bool:
        """Take the stream's next keyframe now (a snapshot on demand), waiting at most
        `timeout_s`: True once it is the latest keyframe, False if none came (the stream
        is down, or its keyframes are further apart). Picture health does not judge it."""
        grabber = self._grabber
        if grabber is None or not self.streaming:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._keyframe_waiters.append(waiter)
        if not grabber.armed:
            grabber.arm()
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            return False
        finally:
            if waiter in self._keyframe_waiters:
                self._keyframe_waiters.remove(waiter)
        return True

    def snapshot(self) -> Snapshot | None:
        health = self.health
        if health is None or not self.streaming:
            return None
        return health.snapshot(time.monotonic())  # the event loop's clock

    async def run(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        self.health = None
        self._degraded = False
        try:
            async with asyncio.timeout(self.timing.connect_s):
                _, conn = await loop.create_connection(
                    lambda: RtspConnection(self._rtp, self._rejected), self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"{self.host}:{self.port}: {exc or 'connect timed out'}") from None
        self._session = None
        try:
            await self._stream(conn, link)
        finally:
            self.streaming = False
            session, self._session = self._session, None
            if session is not None and conn.failure is None:
                with contextlib.suppress(Exception):
                    await conn.request("TEARDOWN", self.url, self._headers(
                        "TEARDOWN", self.url, {"Session": session}), self.timing.teardown_s)
            conn.close()
            await conn.wait_closed(self.timing.teardown_s)
            conn.abort()

    async def _stream(self, conn: RtspConnection, link: Link) -> None:
        t = self.timing
        options = await self._ask(conn, "OPTIONS", self.url)
        public = options.headers.get("public", "").upper()
        described = await self._ask(conn, "DESCRIBE", self.url, {"Accept": "application/sdp"})
        _expect(described, "DESCRIBE")
        base = described.headers.get("content-base") or self.url
        sdp = _parsed(described.body)
        if sdp.video is None:
            raise ProtocolError(f"no H.264/H.265 video track among {list(sdp.media)}")
        video: VideoTrack = sdp.video
        track_url = control_url(control_url(base, sdp.control), video.control)
        setup = await self._ask(conn, "SETUP", track_url,
                                {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
        _expect(setup, "SETUP")
        session_header = setup.headers.get("session")
        if not session_header:
            raise ProtocolError("SETUP answered without a Session")
        session, timeout = session_of(session_header)
        self._session = session  # from here on, TEARDOWN frees the camera's slot
        transport = setup.headers.get("transport", "")
        conn.rtp_channel = _channel(transport)
        keepalive_s = min(t.keepalive_s, timeout / 2) if timeout else t.keepalive_s
        loop = asyncio.get_running_loop()
        self.health = StreamHealth(video.codec, video.clock_rate, loop.time())
        self._grabber = KeyframeGrabber(video.codec)
        self._reference_fps = video.framerate
        play_url = control_url(base, sdp.control)
        played = await self._ask(conn, "PLAY", play_url,
                                 {"Session": session, "Range": "npt=0.000-"})
        _expect(played, "PLAY")
        keep_method = "GET_PARAMETER" if "GET_PARAMETER" in public else "OPTIONS"
        started = loop.time()
        next_keepalive = started + keepalive_s
        next_report = started + t.report_s
        every = self.device.picture_every_s
        next_picture = started + self._phase * every
        while True:
            if conn.ended.done() or conn.failure is not None:
                raise conn.failure or Unreachable("the camera closed the connection")
            now = loop.time()
            health = self.health
            if health.packets and not self.streaming:
                self.streaming = True
                log.info("camera=%s stream=%s codec=%s", self.name, track_url, video.codec)
                link.up()
            silent = now - health.last_packet
            if silent >= t.stall_s:
                what = "stalled" if health.packets else "no RTP after PLAY"
                raise Unreachable(f"{what}: nothing for {silent:.1f} s")
            if now >= next_keepalive:
                next_keepalive = now + keepalive_s
                alive = await self._ask(conn, keep_method, play_url, {"Session": session})
                if alive.status == 454:
                    raise ProtocolError("the camera forgot the session")
            if now >= next_report:
                next_report = now + t.report_s
                self._report(health.snapshot(now), link)
            if now >= next_picture and self.streaming:
                next_picture = now + every
                self._judge_next = True
                self._grabber.arm()
            if self._fresh_keyframe:
                self._fresh_keyframe = False
                await self._judge_picture(video.codec, health)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(t.tick_s):
                    await asyncio.shield(conn.ended)

    def _report(self, snap: Snapshot, link: Link) -> None:
        now = self.clock.now()
        src = self.name
        put = self.sink.telemetry
        if snap.fps is not None:
            put(Reading(src, "stream_fps", round(snap.fps, 2), "fps", now))
        put(Reading(src, "stream_bitrate", round(snap.bitrate_bps), "bit/s", now))
        put(Reading(src, "rtp_lost", float(snap.lost), "packets", now))
        if snap.keyframe_interval_s is not None:
            put(Reading(src, "keyframe_interval", round(snap.keyframe_interval_s, 3), "s", now))
        if snap.fps is None:
            return
        if self._reference_fps is None:
            self._reference_fps = snap.fps  # no a=framerate: the first full window sets it
        floor = self.device.min_fps or self._reference_fps / 2
        if snap.fps < floor and not self._degraded:
            self._degraded = True
            link.degraded(f"low frame rate: {snap.fps:.1f} fps (under {floor:.1f})")
        elif snap.fps >= floor and self._degraded:
            self._degraded = False
            link.up()

    async def _judge_picture(self, codec: Codec, health: StreamHealth) -> None:
        if self.keyframe is None:
            return
        luma = self.decoder.luma(codec, self.keyframe)
        if luma is None:
            self._rejected("keyframe_undecodable", f"{len(self.keyframe)} bytes")
            return
        figures = measure(luma)
        changed = self.picture.sample(figures, health.p_median())
        if changed is None and not self._picture_told and self.picture.settled():
            changed = self.picture.state  # the first word: ok since the gateway started
        if changed is None:
            return
        self._picture_told = True
        like = self.picture.likeness
        log.info("camera=%s picture=%s mean=%.0f std=%.1f sharpness=%.0f edges=%.3f"
                 " likeness=%s", self.name, changed, figures.mean, figures.std,
                 figures.sharpness, figures.edges, "-" if like is None else f"{like:.2f}")
        data: dict[str, object] = {
            "mean": round(figures.mean, 1), "std": round(figures.std, 1),
            "sharpness": round(figures.sharpness), "edges": round(figures.edges, 4)}
        if like is not None:
            data["likeness"] = round(like, 3)  # the edge map against the reference
        await self._picture_event(changed, data)

    async def retake_reference(self, who: str, why: str) -> Picture:
        """The operator says the camera looks where it should: what it shows now is the
        reference of the moved check. A moved state clears at once. When the picture is
        then ok, `camera.image.ok` says so (carrying who and why), even if it was ok
        already: a moved alert kept over a restart clears too. The state after it."""
        self.picture.retake_reference()
        log.info("camera=%s reference retaken who=%s", self.name, who)
        if self.picture.state is Picture.OK:
            await self._picture_event(Picture.OK, {"reference": "retaken", "who": who,
                                                   "why": why})
        return self.picture.state

    async def _picture_event(self, state: Picture, data: dict[str, object]) -> None:
        severity = Severity.INFO if state is Picture.OK else Severity.MINOR
        await self.sink.event(Event(
            f"camera.image.{state}", self.name, seq=self.sink.next_seq(self.name),
            time=self.clock.now(), severity=severity, data=data))

    def _rtp(self, now: float, pkt: RtpPacket, data: bytes) -> None:
        health = self.health
        if health is None:
            return
        grabber = self._grabber
        if grabber is not None and grabber.armed:
            try:
                taken = grabber.feed(pkt, data)
            except PayloadRejected as exc:
                self._rejected(exc.reason, exc.detail)
                taken = None
            if taken is not None:
                self.keyframe = taken
                self.keyframe_codec = grabber.codec
                self._fresh_keyframe, self._judge_next = self._judge_next, False
                waiters, self._keyframe_waiters = self._keyframe_waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        try:
            health.packet(now, pkt, data)
        except PayloadRejected as exc:
            health.rejected += 1
            self._rejected(exc.reason, exc.detail)

    def _rejected(self, reason: str, detail: str) -> None:
        self.sink.rejected(DRIVER, reason, detail, source=self.name)

    def _headers(self, method: str, url: str, extra: dict[str, str] | None = None
                 ) -> dict[str, str]:
        headers = dict(extra or {})
        c = self._challenge
        user = self.device.username
        if c is not None and user is not None:
            if c.scheme == "digest":
                self._nc += 1
                headers["Authorization"] = auth.digest(c, user, self._password or "", method,
                                                       url, self._nc)
            else:
                headers["Authorization"] = auth.basic(user, self._password or "")
        return headers

    async def _ask(self, conn: RtspConnection, method: str, url: str,
                   extra: dict[str, str] | None = None) -> Response:
        answer = await conn.request(method, url, self._headers(method, url, extra),
                                    self.timing.answer_s)
        if answer.status != 401:
            return answer
        if self.device.username is None:
            raise AuthError(f"{method}: the camera wants a login and none is configured")
        try:
            self._challenge = auth.pick(answer.authenticate)
        except PayloadRejected as exc:
            self._rejected(exc.reason, exc.detail)
            raise ProtocolError(str(exc)) from None
        self._nc = 0
        answer = await conn.request(method, url, self._headers(method, url, extra),
                                    self.timing.answer_s)
        if answer.status == 401:
            raise AuthError(f"{method}: the camera refused the login")
        return answer


def _expect(response: Response, method: str) -> None:
    if response.status != 200:
        if response.status == 453:
            raise Unreachable(f"{method}: no free stream slot (453 {response.reason})")
        raise ProtocolError(f"{method} answered {response.status} {response.reason}"[:120])


def _parsed(body: bytes) -> Description:
    try:
        return parse_sdp(body)
    except PayloadRejected as exc:
        raise ProtocolError(f"DESCRIBE: {exc}") from None


def _channel(transport: str) -> int:
    for part in transport.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "interleaved":
            first = value.partition("-")[0]
            if first.isdigit() and int(first) < 256:
                return int(first)
            raise ProtocolError(f"SETUP: bad interleaved channel {value[:20]!r}")
    return 0

