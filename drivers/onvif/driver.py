"""The camera's ONVIF monitor: one session per camera beside its stream monitor, with the
camera's `onvif:` URL and the stream's login. Per connection it reads the device
information (one `camera.onvif.info` event), the camera's clock (a `clock_drift_s`
reading, again every `time_every_s`), the media profiles and their stream and snapshot
URIs, and then holds one PullPoint subscription: long polls, renewed at half its life,
re-created when the camera says it does not know it (it rebooted), and unsubscribed
whenever the session ends, shutdown included (cameras hold few subscriptions and cannot
list them, so a leaked one is lost until it expires).

A malformed answer, a SOAP fault, an HTTP error or a timeout is counted in
`gateway_payloads_rejected{driver="onvif",reason=...}` and ends the session; the camera's
supervisor restarts it with backoff. No camera's failure touches another's."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from drivers.onvif.adapter import (
    DeviceInfo,
    EventsUnsupported,
    OnvifRejected,
    OnvifSession,
    OnvifTimeout,
    Profile,
    SubscriptionGone,
)
from drivers.onvif.schedule import drift_s, poll_for, renew_in
from drivers.onvif.topics import Notification, bare, meaning_of, source_key, state_of
from drivers.rtsp.config import CameraDevice
from gateway.clock import Clock, SystemClock
from gateway.contract import Link, Sink
from gateway.errors import AuthError, ProtocolError, Unreachable
from gateway.events import Event, Reading, Severity

log = logging.getLogger("drivers.onvif")

DRIVER = "onvif"
# A login refused while the camera's clock is this far from what the session's login
# timestamps assume: the session starts again with the new offset.
CLOCK_MOVED_S = 4.0


@dataclass(frozen=True, slots=True)
class Timing:
    answer_s: float = 5.0  # every request but the long poll
    # The lifetime asked for: renewed at half, every 5 of 10 minutes.
    lifetime_s: float = 600.0
    poll_s: float = 30.0  # one PullMessages waits this long on the camera for events
    time_every_s: float = 300.0  # the camera's clock is read this often
    unsubscribe_s: float = 2.0  # shutdown waits at most this long for the camera


@dataclass(slots=True)
class OnvifFigures:
    """What the monitor last learned, for the gauges and the snapshot source."""

    info: DeviceInfo | None = None
    drift_s: float | None = None
    profiles: list[Profile] = field(default_factory=list)
    stream_uri: str | None = None  # the sub-stream's
    snapshot_uri: str | None = None


class OnvifMonitor:
    """Watches one camera's ONVIF services; `figures` is what it learned."""

    def __init__(self, device: CameraDevice, sink: Sink, *, password: str | None = None,
                 clock: Clock | None = None, timing: Timing | None = None,
                 opening: asyncio.Semaphore | None = None) -> None:
        if device.onvif is None:
            raise ValueError(f"camera {device.id} has no onvif URL")
        self.device = device
        self.camera = device.id
        self.name = f"onvif:{device.id}"
        self.sink = sink
        self.clock = clock or SystemClock()
        self.timing = timing or Timing()
        self._password = password
        self.figures = OnvifFigures()
        self.states: dict[tuple[str, str], bool] = {}  # (what, source) -> state
        self.subscriptions = 0  # created, over the monitor's life
        self.renewals = 0
        self.resubscribed = 0  # re-created after the camera forgot one
        self.stale_given_back = 0  # left behind by a lost session, given back later
        self._stale: str | None = None
        # Shared by the site's cameras: how many may be starting a session at once. A
        # session's start costs ~0.1 CPU-s of SOAP parsing; 100 at once would starve the
        # event loop until their requests time out.
        self._opening = opening
        self._address_checked = False
        # None until the camera was asked; False: it has no PullPoint events (some old
        # firmware), so its device, clock and media are watched without them.
        self.events: bool | None = None

    def snapshot_uri(self) -> str | None:
        return self.figures.snapshot_uri

    def drift(self) -> float | None:
        return self.figures.drift_s

    def about(self) -> tuple[str, str, str] | None:
        """Manufacturer, model and firmware, once the camera told them."""
        info = self.figures.info
        return None if info is None else (info.manufacturer, info.model, info.firmware)

    async def run(self, link: Link) -> None:
        d, t = self.device, self.timing
        assert d.onvif is not None
        session = OnvifSession(d.onvif, d.username, self._password, timeout_s=t.answer_s)
        try:
            await self._session(session, link)
        except OnvifRejected as exc:
            self._rejected(exc.reason, exc.detail)
            raise
        except OnvifTimeout as exc:
            self._rejected(exc.reason, str(exc))
            raise
        finally:
            held = session.subscription
            try:
                await session.unsubscribe(t.unsubscribe_s)
            except Exception:  # the camera is gone: given back by the next session
                self._stale = held
            await session.close()

    async def _session(self, session: OnvifSession, link: Link) -> None:
        async with self._opening or contextlib.nullcontext():
            renew_in_s = await self._start(session)
        link.up()
        await self._watch(session, renew_in_s)

    async def _start(self, session: OnvifSession) -> float:
        """Everything read once per connection, up to the subscription; seconds until its
        renewal."""
        t = self.timing
        await session.open()
        stale, self._stale = self._stale, None
        if stale is not None:
            # Cameras hold few subscriptions: the one the last session could not give
            # back goes first (already gone after a reboot: that is fine too).
            with contextlib.suppress(OnvifRejected, Unreachable):
                await session.unsubscribe_stale(stale, t.unsubscribe_s)
                self.stale_given_back += 1
        info = await session.device_info()
        self.figures.info = info
        await self._check_time(session)
        profiles = await session.profiles()
        self._choose(profiles)
        await self._info_event(info)
        try:
            return await self._subscribe(session)
        except EventsUnsupported as exc:
            if self.events is not False:  # said once, not at every reconnect
                log.warning("camera=%s has no ONVIF PullPoint events (%s): its device, "
                            "clock and streams are watched without them", self.camera,
                            exc.detail[:120])
            self.events = False
            return float("inf")

    async def _watch(self, session: OnvifSession, renew_in_s: float) -> None:
        try:
            await self._watching(session, renew_in_s)
        except AuthError:
            # A login that worked a moment ago: most likely the camera's clock jumped and
            # it now refuses our timestamps. If so, that is the failure (a short backoff),
            # not a wrong password (the longest).
            await self._check_time(session, refused=True)
            raise

    async def _watching(self, session: OnvifSession, renew_in_s: float) -> None:
        t = self.timing
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + renew_in_s
        next_time = loop.time() + t.time_every_s
        while True:
            now = loop.time()
            if now >= renew_at:
                try:
                    sub = await session.renew(t.lifetime_s)
                    self.renewals += 1
                    renew_at = loop.time() + renew_in(t.lifetime_s, sub.current, sub.termination)
                except SubscriptionGone as exc:
                    renew_at = loop.time() + await self._resubscribe(session, str(exc))
                continue
            if now >= next_time:
                next_time = now + t.time_every_s
                await self._check_time(session)
            wait = min(poll_for(t.poll_s, renew_at, now), max(0.0, next_time - now))
            if not session.subscribed:  # a camera without events: only its clock
                await asyncio.sleep(max(0.0, next_time - now))
                continue
            try:
                pulled = await session.pull(wait)
            except SubscriptionGone as exc:
                renew_at = loop.time() + await self._resubscribe(session, str(exc))
                continue
            if pulled.unreadable:
                self._rejected("event_unreadable", f"{pulled.unreadable} message(s)")
            for note in pulled.notifications:
                await self._notification(note)

    async def _subscribe(self, session: OnvifSession) -> float:
        sub = await session.subscribe(self.timing.lifetime_s)
        self.subscriptions += 1
        self.events = True
        return renew_in(self.timing.lifetime_s, sub.current, sub.termination)

    async def _resubscribe(self, session: OnvifSession, reason: str) -> float:
        session.subscribed = False  # the camera holds none: nothing to unsubscribe
        self.resubscribed += 1
        log.warning("camera=%s onvif subscription lost (%s); subscribing again",
                    self.camera, reason[:120])
        return await self._subscribe(session)

    async def _check_time(self, session: OnvifSession, *, refused: bool = False) -> None:
        taken = await session.system_time(self.clock.now)
        if taken.utc is None:
            return  # the camera keeps only local time: no drift can be told
        drift = round(drift_s(taken.utc, taken.sent, taken.received), 1)
        self.figures.drift_s = drift
        self.sink.telemetry(Reading(self.camera, "clock_drift_s", drift, "s",
                                    self.clock.now()))
        if refused and abs(drift - session.clock_offset_s) > CLOCK_MOVED_S:
            # The login's timestamps follow the offset read at the session's start; a
            # camera that checks them refuses them once its clock moved.
            raise ProtocolError(f"the camera's clock moved to {drift:+.0f} s: a new "
                                "session takes it")

    def _choose(self, profiles: list[Profile]) -> None:
        """The sub-stream (the smallest picture) and its snapshot URI; once, a warning if
        the site file's address is none of the camera's streams."""
        f = self.figures
        f.profiles = profiles
        streams = [p for p in profiles if p.stream_uri]
        mine = next((p for p in streams if same_stream(p.stream_uri, self.device.address)),
                    None)
        # The smallest picture; between equals, the one named the sub-stream, else the
        # later one (cameras list the main stream first).
        ranked = sorted(enumerate(streams), key=lambda e: (
            _area(e[1]), "sub" not in f"{e[1].token} {e[1].name}".lower(), -e[0]))
        sub = ranked[0][1] if ranked else None
        f.stream_uri = sub.stream_uri if sub is not None else None
        chosen = mine or sub
        snaps = [p.snapshot_uri for p in ([chosen] if chosen else []) + profiles
                 if p.snapshot_uri]
        f.snapshot_uri = snaps[0] if snaps else None
        if mine is None and streams and not self._address_checked:
            log.warning("camera=%s the site file's stream is none of the camera's "
                        "profiles; its sub-stream is %s", self.camera, _without_login(
                            f.stream_uri))
        elif (mine is not None and sub is not None and _area(mine) > _area(sub)
              and not self._address_checked):
            log.warning("camera=%s watches profile %s, not the sub-stream %s",
                            self.camera, mine.name, sub.name)
        self._address_checked = True

    async def _info_event(self, info: DeviceInfo) -> None:
        f = self.figures
        data: dict[str, object] = {
            "manufacturer": info.manufacturer, "model": info.model,
            "firmware": info.firmware, "serial": info.serial, "hardware": info.hardware,
            "profiles": len(f.profiles)}
        if f.drift_s is not None:
            data["clock_drift_s"] = f.drift_s
        if f.stream_uri:
            data["sub_stream"] = _without_login(f.stream_uri)
        log.info("camera=%s onvif manufacturer=%s model=%s firmware=%s", self.camera,
                 info.manufacturer, info.model, info.firmware)
        await self.sink.event(Event("camera.onvif.info", self.camera,
                                    seq=self.sink.next_seq(self.camera),
                                    time=self.clock.now(), data=data))

    async def _notification(self, note: Notification) -> None:
        meaning = meaning_of(note.topic)
        if meaning is None:
            return  # a topic the compound does not watch
        state = state_of(note, meaning)
        if state is None:
            self._rejected("event_state", f"{bare(note.topic)}: {note.data}"[:200])
            return
        key = (meaning.what, source_key(note))
        previous = self.states.get(key)
        self.states[key] = state
        if state == previous or (previous is None and not state):
            return  # no change; a first "false" (Initialized) is the quiet start
        kind = f"camera.{meaning.what}" + ("" if state else ".end")
        await self.sink.event(Event(
            kind, self.camera, seq=self.sink.next_seq(self.camera), time=self.clock.now(),
            severity=meaning.severity if state else Severity.INFO,
            device_time=_epoch(note.utc_time),
            data={"topic": bare(note.topic), "source": dict(note.source),
                  "operation": note.operation}))

    def _rejected(self, reason: str, detail: str) -> None:
        self.sink.rejected(DRIVER, reason, detail, source=self.camera)


def _area(p: Profile) -> int:
    return (p.width or 1 << 15) * (p.height or 1 << 15)


def _key(url: str | None) -> tuple[str, str, int, str]:
    parts = urlsplit(url or "")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or 554, path)


def same_stream(a: str | None, b: str | None) -> bool:
    """Two RTSP URLs naming the same stream (logins and the default port aside)."""
    return a is not None and b is not None and _key(a) == _key(b)


def _without_login(url: str | None) -> str:
    parts = urlsplit(url or "")
    if parts.username is None and parts.password is None:
        return url or ""
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


def _epoch(text: str) -> float | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
