"""A simulated camera's ONVIF events (ver10, WS-BaseNotification PullPoint): the topics a
real camera raises, the state behind each, and the subscriptions that hold what is waiting
to be pulled.

The picture a camera shows drives the imaging topics: `black` is ImageTooDark, `blurred`
is ImageTooBlurry, `covered` is a GlobalSceneChange and the vendor tamper topic. Motion is
switched by hand (`cam-001 motion on`). Every message is a property event with a `Source`
(the video source configuration's token) and a boolean `State`; a new subscription, and
SetSynchronizationPoint, first get every property's current value (`Initialized`), then
each change (`Changed`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import secrets
from collections import deque
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

# key -> topic expression (ConcreteSet dialect), as cameras name them.
TOPICS: dict[str, str] = {
    "motion": "tns1:VideoSource/MotionAlarm",
    "scene_change": "tns1:VideoSource/GlobalSceneChange/ImagingService",
    "too_dark": "tns1:VideoSource/ImageTooDark/ImagingService",
    "too_blurry": "tns1:VideoSource/ImageTooBlurry/ImagingService",
    "tamper": "tns1:RuleEngine/TamperDetector/Tamper",
}
TOPIC_DIALECT = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
DEFAULT_TERMINATION_S = 60.0
MAX_TERMINATION_S = 24 * 3600.0
MAX_PULL_TIMEOUT_S = 120.0
MAX_QUEUED = 500  # a subscription nobody pulls keeps only its latest messages


def picture_states(picture: str) -> dict[str, bool]:
    """What the imaging topics say about a picture (scene, black, frozen, ...)."""
    return {
        "scene_change": picture == "covered",
        "too_dark": picture == "black",
        "too_blurry": picture == "blurred",
        "tamper": picture == "covered",
    }


_DURATION = re.compile(
    r"^-?P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    """xs:duration (days and time only, as ONVIF uses it) in seconds; ValueError if not."""
    found = _DURATION.match(text.strip())
    if found is None or text.strip() in ("P", "PT", "-P"):
        raise ValueError(f"not a duration: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in found.groupdict().items()}
    seconds = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    return -seconds if text.strip().startswith("-") else seconds


def parse_termination(text: str | None, now: dt.datetime) -> float:
    """A termination time, relative (a duration) or absolute (on the camera's clock `now`),
    as seconds from now; ValueError if it is neither or already past."""
    if text is None or not text.strip():
        return DEFAULT_TERMINATION_S
    text = text.strip()
    if text.startswith(("P", "-P")):
        seconds = parse_duration(text)
    else:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - now).total_seconds()
    if seconds <= 0:
        raise ValueError(f"termination time in the past: {text!r}")
    return min(seconds, MAX_TERMINATION_S)


def xml_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Notification:
    key: str  # a TOPICS key
    state: bool
    utc: dt.datetime
    operation: str  # "Initialized" or "Changed"
    source: str  # the video source configuration's token

    def xml(self) -> str:
        return (
            "<wsnt:NotificationMessage>"
            f'<wsnt:Topic Dialect="{TOPIC_DIALECT}">{TOPICS[self.key]}</wsnt:Topic>'
            "<wsnt:Message>"
            f'<tt:Message UtcTime="{xml_time(self.utc)}" PropertyOperation='
            f'{quoteattr(self.operation)}>'
            f'<tt:Source><tt:SimpleItem Name="Source" Value={quoteattr(self.source)}/>'
            "</tt:Source>"
            f'<tt:Data><tt:SimpleItem Name="State" Value="{str(self.state).lower()}"/>'
            "</tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>")


@dataclass
class Subscription:
    id: str
    expires_at: float  # event loop time
    queue: deque[Notification] = field(default_factory=lambda: deque(maxlen=MAX_QUEUED))
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    gone: bool = False
    pulls: int = 0

    def put(self, note: Notification) -> None:
        self.queue.append(note)
        self.arrived.set()

    def take(self, limit: int) -> list[Notification]:
        out = [self.queue.popleft() for _ in range(min(limit, len(self.queue)))]
        if not self.queue:
            self.arrived.clear()
        return out


class EventSource:
    """One camera's event producer: its properties' states and its PullPoint subscriptions.
    A subscription not renewed is gone at its termination time; a reboot forgets them all."""

    def __init__(self, source_token: str, clock: CameraClock) -> None:
        self.source_token = source_token
        self.clock = clock
        self.states: dict[str, bool] = dict.fromkeys(TOPICS, False)
        self._subs: dict[str, Subscription] = {}
        self.created = 0  # subscriptions ever made, for tests and status
        self.unsubscribed = 0
        self.expired = 0

    @property
    def subscriptions(self) -> int:
        """Subscriptions held now (expired ones are dropped first)."""
        self._purge()
        return len(self._subs)

    def _purge(self) -> None:
        now = asyncio.get_running_loop().time()
        for sid, sub in list(self._subs.items()):
            if sub.expires_at <= now:
                self._drop(sid)
                self.expired += 1

    def _drop(self, sid: str) -> None:
        sub = self._subs.pop(sid, None)
        if sub is not None:
            sub.gone = True
            sub.arrived.set()  # a pull waiting on it ends now

    def create(self, seconds: float) -> Subscription:
        self._purge()
        loop = asyncio.get_running_loop()
        sub = Subscription(secrets.token_hex(8), loop.time() + seconds)
        self._subs[sub.id] = sub
        self.created += 1
        self._initialize(sub)
        return sub

    def get(self, sid: str) -> Subscription | None:
        self._purge()
        return self._subs.get(sid)

    def renew(self, sub: Subscription, seconds: float) -> None:
        sub.expires_at = asyncio.get_running_loop().time() + seconds

    def unsubscribe(self, sub: Subscription) -> None:
        self._drop(sub.id)
        self.unsubscribed += 1

    def forget_all(self) -> None:
        """A reboot: every subscription is gone, and so is their state."""
        for sid in list(self._subs):
            self._drop(sid)

    def synchronize(self, sub: Subscription) -> None:
        self._initialize(sub)

    def _initialize(self, sub: Subscription) -> None:
        now = self.clock.now()
        for key, state in self.states.items():
            sub.put(Notification(key, state, now, "Initialized", self.source_token))

    def set_state(self, key: str, state: bool) -> None:
        """A property changes: every live subscription is told, once per change."""
        if self.states[key] == state:
            return
        self.states[key] = state
        self._purge()
        note = Notification(key, state, self.clock.now(), "Changed", self.source_token)
        for sub in self._subs.values():
            sub.put(note)

    def show_picture(self, picture: str) -> None:
        for key, state in picture_states(picture).items():
            self.set_state(key, state)

    async def pull(self, sub: Subscription, wait_s: float, limit: int) -> list[Notification]:
        """What is waiting, or what arrives within `wait_s` (the subscription's end at the
        latest); an empty list when nothing came."""
        sub.pulls += 1
        limit = max(1, limit)
        if not sub.queue:
            loop = asyncio.get_running_loop()
            wait = min(wait_s, MAX_PULL_TIMEOUT_S, max(0.0, sub.expires_at - loop.time()))
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.arrived.wait(), wait)
        if sub.gone:
            return []
        return sub.take(limit)

    def live(self) -> list[Subscription]:
        self._purge()
        return list(self._subs.values())


class CameraClock:
    """The camera's clock: UTC plus the camera's offset (a drift fault)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.offset_s)
