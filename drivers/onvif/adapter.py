"""Every call into onvif-zeep-async, behind one small session per camera.

The library's `PullPointManager` is not used: it renews on a timer task of its own, floors
the lifetime at 60 s and restarts lost subscriptions by itself, a second retry policy
beside the supervisor's. Here the driver decides when to renew, and any failure ends the
session for the supervisor to restart.

Whatever goes wrong comes out as one of the gateway's errors, classified:

    Unreachable            no TCP connection, the camera closed it
    +-- OnvifTimeout       no answer in time                     reason `timeout`
    AuthError              HTTP 401, or a SOAP fault NotAuthorized
    ProtocolError
    +-- OnvifRejected      an answer we cannot use, `reason`:
        |                    `malformed_soap` (not XML, not SOAP, not the schema)
        |                    `soap_fault`, `http_error` (a status without SOAP)
        +-- SubscriptionGone  the camera does not know the subscription (it rebooted)

The password is handed to the library and never appears in an error's text."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import aiohttp
import zeep.exceptions
from onvif import ONVIFCamera
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError

from drivers.onvif.schedule import iso_duration
from drivers.onvif.topics import Notification
from gateway.errors import AuthError, ProtocolError, Unreachable

# The library logs every failed renewal and parse on its own logger; the driver logs
# once per transition instead.
logging.getLogger("onvif").setLevel(logging.ERROR)
logging.getLogger("zeep").setLevel(logging.ERROR)

_PULLPOINT_NS: Final = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"
_UNKNOWN: Final = re.compile(r"resourceunknown|unknown subscription|no such subscription|"
                             r"invalid subscription|subscription.*not (found|exist)", re.I)
_NOT_AUTHORIZED: Final = re.compile(r"notauthorized|not authorized|authority failure|"
                                    r"failedauthentication", re.I)

T = TypeVar("T")


class OnvifTimeout(Unreachable):
    """The camera did not answer in time."""

    reason = "timeout"


class OnvifRejected(ProtocolError):
    """The camera's answer cannot be used; `reason` is a bounded label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}"[:300])
        self.reason = reason
        self.detail = detail[:200]


class SubscriptionGone(OnvifRejected):
    """The camera does not know the subscription any more (a reboot lost it)."""


class EventsUnsupported(OnvifRejected):
    """The camera has no event service, or one without PullPoint (some old firmware):
    its device, clock and media are still watched, its events cannot be."""


# A SOAP fault or an HTTP status that says the operation does not exist on this camera.
_NOT_SUPPORTED = re.compile(r"ActionNotSupported|NotImplemented|not supported", re.I)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    manufacturer: str
    model: str
    firmware: str
    serial: str
    hardware: str


@dataclass(frozen=True, slots=True)
class Profile:
    token: str
    name: str
    width: int | None
    height: int | None
    encoding: str
    stream_uri: str | None
    snapshot_uri: str | None


@dataclass(frozen=True, slots=True)
class Subscription:
    address: str
    current: dt.datetime | None  # the camera's clock
    termination: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Pulled:
    current: dt.datetime | None
    termination: dt.datetime | None
    notifications: list[Notification]
    unreadable: int = 0  # messages that could not be read (skipped)


@dataclass(frozen=True, slots=True)
class CameraTime:
    utc: dt.datetime | None  # None: the camera gave no UTC time
    sent: float  # the gateway's UTC epoch seconds around the request
    received: float


def classify(exc: BaseException, what: str) -> Exception:
    """The gateway's error for what the library or its HTTP client raised."""
    if isinstance(exc, OnvifRejected | AuthError | Unreachable):
        return exc
    if isinstance(exc, ONVIFAuthError):
        return AuthError(f"{what}: the camera refused the login")
    if isinstance(exc, TimeoutError | ONVIFTimeoutError | aiohttp.ServerTimeoutError):
        return OnvifTimeout(f"{what}: no answer in time")
    if isinstance(exc, zeep.exceptions.Fault):
        subcodes = " ".join(getattr(c, "text", None) or str(c) for c in exc.subcodes or ())
        text = " ".join(str(p) for p in (exc.code, subcodes, exc.message) if p)
        if _NOT_AUTHORIZED.search(text):
            return AuthError(f"{what}: the camera refused the login ({exc.message})"[:200])
        if _UNKNOWN.search(text):
            return SubscriptionGone("soap_fault", f"{what}: {text}")
        return OnvifRejected("soap_fault", f"{what}: {text}")
    if isinstance(exc, zeep.exceptions.TransportError):
        status = exc.status_code
        if status == 401:
            return AuthError(f"{what}: the camera refused the login (HTTP 401)")
        if status == 404 and what in ("PullMessages", "Renew"):
            return SubscriptionGone("http_error", f"{what}: HTTP 404")
        if status == 200 or "invalid XML" in str(exc):
            return OnvifRejected("malformed_soap", f"{what}: not XML (HTTP {status})")
        return OnvifRejected("http_error", f"{what}: HTTP {status}")
    if isinstance(exc, zeep.exceptions.XMLSyntaxError | zeep.exceptions.XMLParseError |
                  zeep.exceptions.ValidationError | zeep.exceptions.UnexpectedElementError):
        return OnvifRejected("malformed_soap", f"{what}: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return OnvifRejected("http_error", f"{what}: HTTP {exc.status}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return Unreachable(f"{what}: {type(exc).__name__}")
    if isinstance(exc, ONVIFError):
        cause = exc.__cause__
        if cause is not None and cause is not exc:
            return classify(cause, what)
        return OnvifRejected("malformed_soap", f"{what}: {type(exc).__name__}")
    if isinstance(exc, AttributeError | KeyError | TypeError | ValueError | IndexError):
        # An answer that parsed but lacks what the schema promises.
        return OnvifRejected("malformed_soap", f"{what}: {type(exc).__name__}")
    return ProtocolError(f"{what}: {type(exc).__name__}")


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """An answer that parsed but lacks what the schema promises (a truncated reply that
    zeep recovered, a camera that leaves out a required element) is malformed."""
    try:
        yield
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise OnvifRejected("malformed_soap", f"{what}: {type(exc).__name__}") from None


class _Camera(ONVIFCamera):  # type: ignore[misc]
    """The library's camera, but its device service at the URL the site file names (the
    library would always use /onvif/device_service)."""

    def __init__(self, url: str, username: str | None, password: str | None) -> None:
        parts = urlsplit(url)
        # adjust_time: the WS-Security timestamps follow the camera's clock, so a camera
        # whose clock drifted still takes our login (and is told of its drift).
        # No login configured: an empty UsernameToken, which a camera without accounts
        # ignores (the library cannot leave the header out).
        super().__init__(parts.hostname or "", parts.port or 80, username or "",
                         password or "", no_cache=True, adjust_time=True)
        self.device_url = url

    def get_definition(self, name: str, port_type: str | None = None
                       ) -> tuple[str, str, str]:
        xaddr, wsdl, binding = super().get_definition(name, port_type)
        return (self.device_url if name == "devicemgmt" else xaddr), wsdl, binding


class OnvifSession:
    """One camera's ONVIF services for one connection. Not safe for concurrent calls: the
    driver makes them one at a time."""

    def __init__(self, url: str, username: str | None, password: str | None, *,
                 timeout_s: float = 5.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._camera = _Camera(url, username, password)
        self._subscription: Any = None
        self._pullpoint: Any = None
        self.subscribed = False

    async def _call(self, what: str, call: Callable[[], Awaitable[T]],
                    timeout_s: float | None = None) -> T:
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s):
                return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify(exc, what) from None

    async def open(self) -> None:
        """Reach the device service, take the camera's clock for the login, and learn
        where its media and event services are."""
        await self._call("GetServices", self._camera.update_xaddrs,
                         self.timeout_s * 3)  # up to three round trips

    async def _mgmt(self, operation: str) -> Any:
        mgmt = await self._camera.create_devicemgmt_service()
        return await getattr(mgmt, operation)()

    async def device_info(self) -> DeviceInfo:
        r = await self._call("GetDeviceInformation", lambda: self._mgmt("GetDeviceInformation"))
        with _reading("GetDeviceInformation"):
            return DeviceInfo(_text(r.Manufacturer), _text(r.Model),
                              _text(r.FirmwareVersion), _text(r.SerialNumber),
                              _text(r.HardwareId))

    @property
    def clock_offset_s(self) -> float:
        """The camera's clock minus ours as the session's login timestamps assume it."""
        diff = self._camera.dt_diff
        return 0.0 if diff is None else float(diff.total_seconds())

    async def system_time(self, now: Callable[[], float] = time.time) -> CameraTime:
        async def ask() -> Any:
            # Without a login first, as ONVIF allows: a token stamped with a stale offset
            # would be refused just when the clock is what is wrong.
            try:
                return await self._mgmt("authless_GetSystemDateAndTime")
            except zeep.exceptions.Fault:
                return await self._mgmt("GetSystemDateAndTime")

        sent = now()
        r = await self._call("GetSystemDateAndTime", ask)
        received = now()
        with _reading("GetSystemDateAndTime"):
            return CameraTime(_utc_of(r), sent, received)

    async def profiles(self) -> list[Profile]:
        media = await self._call("GetServices", self._camera.create_media_service)
        listed = await self._call("GetProfiles", lambda: media.GetProfiles())
        out: list[Profile] = []
        for p in listed or []:
            with _reading("GetProfiles"):
                token = str(p.token)
            stream = await self._call("GetStreamUri", functools.partial(
                media.GetStreamUri, {"StreamSetup": {"Stream": "RTP-Unicast",
                                                     "Transport": {"Protocol": "RTSP"}},
                                     "ProfileToken": token}))
            try:
                snap = await self._call("GetSnapshotUri",
                                        functools.partial(media.GetSnapshotUri,
                                                          {"ProfileToken": token}))
                snapshot_uri = _uri(snap)
            except OnvifRejected as exc:
                if exc.reason != "soap_fault":
                    raise
                snapshot_uri = None  # a profile without snapshots: a fault, and no harm
            with _reading("GetProfiles"):
                enc = getattr(p, "VideoEncoderConfiguration", None)
                res = getattr(enc, "Resolution", None) if enc is not None else None
                out.append(Profile(
                    token, _text(getattr(p, "Name", token)),
                    _int(getattr(res, "Width", None)), _int(getattr(res, "Height", None)),
                    _text(getattr(enc, "Encoding", "")) if enc is not None else "",
                    _uri(stream), snapshot_uri))
        return out

    async def subscribe(self, lifetime_s: float) -> Subscription:
        cam = self._camera

        async def create() -> Any:
            try:
                events = await cam.create_events_service()
            except ONVIFError as exc:
                if "support service" not in str(exc):
                    raise
                raise EventsUnsupported("no_events", "the camera lists no event service"
                                        ) from None
            return await events.CreatePullPointSubscription(
                {"InitialTerminationTime": iso_duration(lifetime_s)})

        try:
            r = await self._call("CreatePullPointSubscription", create)
        except OnvifRejected as exc:
            if isinstance(exc, SubscriptionGone | EventsUnsupported) or not (
                    _NOT_SUPPORTED.search(exc.detail) or
                    re.search(r"HTTP (404|405|501)\b", exc.detail)):
                raise
            raise EventsUnsupported("no_events", exc.detail) from None
        try:
            address = str(r.SubscriptionReference.Address._value_1)
        except AttributeError:
            raise OnvifRejected("malformed_soap",
                                "CreatePullPointSubscription: no subscription address") from None
        cam.xaddrs[_PULLPOINT_NS] = address
        self._subscription = await self._call(
            "CreatePullPointSubscription",
            lambda: cam.create_subscription_service("PullPointSubscription"))
        self._pullpoint = await self._call("CreatePullPointSubscription",
                                           cam.create_pullpoint_service)
        self.subscribed = True
        return Subscription(address, _time(r, "CurrentTime"), _time(r, "TerminationTime"))

    async def pull(self, wait_s: float, limit: int = 100) -> Pulled:
        timeout = dt.timedelta(seconds=max(0, round(wait_s)))
        r = await self._call("PullMessages", lambda: self._pullpoint.PullMessages(
            {"Timeout": timeout, "MessageLimit": limit}), wait_s + self.timeout_s)
        with _reading("PullMessages"):
            messages = list(r.NotificationMessage or [])
        notes: list[Notification] = []
        unreadable = 0
        for m in messages:
            try:
                note = _notification(m)
            except (AttributeError, TypeError, ValueError, KeyError, IndexError):
                unreadable += 1  # one bad message; the others are still read
                continue
            if note is not None:
                notes.append(note)
        return Pulled(_time(r, "CurrentTime"), _time(r, "TerminationTime"), notes, unreadable)

    async def renew(self, lifetime_s: float) -> Subscription:
        r = await self._call("Renew", lambda: self._subscription.Renew(
            {"TerminationTime": iso_duration(lifetime_s)}))
        return Subscription(self._camera.xaddrs.get(_PULLPOINT_NS, ""),
                            _time(r, "CurrentTime"), _time(r, "TerminationTime"))

    @property
    def subscription(self) -> str | None:
        """The address of the subscription this session holds, if any."""
        return self._camera.xaddrs.get(_PULLPOINT_NS) if self.subscribed else None

    async def unsubscribe(self, timeout_s: float) -> None:
        if not self.subscribed:
            return
        self.subscribed = False
        await self._call("Unsubscribe", lambda: self._subscription.Unsubscribe(), timeout_s)

    async def unsubscribe_stale(self, address: str, timeout_s: float) -> None:
        """Give back a subscription an earlier session could not (the camera was gone
        when it ended); before this session subscribes."""
        cam = self._camera
        cam.xaddrs[_PULLPOINT_NS] = address

        async def unsubscribe() -> Any:
            service = await cam.create_subscription_service("PullPointSubscription")
            return await service.Unsubscribe()

        await self._call("Unsubscribe", unsubscribe, timeout_s)

    async def close(self) -> None:
        try:
            async with asyncio.timeout(1.0):
                await self._camera.close()
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass


def _text(value: object) -> str:
    return "" if value is None else str(value)[:120]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _uri(answer: Any) -> str | None:
    uri = getattr(getattr(answer, "MediaUri", answer), "Uri", None)
    return str(uri) if uri else None


def _time(answer: Any, name: str) -> dt.datetime | None:
    value = getattr(answer, name, None)
    return value if isinstance(value, dt.datetime) else None


def _utc_of(answer: Any) -> dt.datetime | None:
    utc = getattr(answer, "UTCDateTime", None)
    if utc is None:
        return None
    d, t = utc.Date, utc.Time
    return dt.datetime(int(d.Year), int(d.Month), int(d.Day), int(t.Hour), int(t.Minute),
                       int(t.Second), tzinfo=dt.UTC)


def _items(node: Any) -> dict[str, str]:
    if node is None:
        return {}
    if hasattr(node, "iter") and hasattr(node, "tag"):  # an lxml element
        return {str(e.get("Name")): str(e.get("Value", "")) for e in node.iter()
                if isinstance(e.tag, str) and e.tag.endswith("SimpleItem") and e.get("Name")}
    items = getattr(node, "SimpleItem", None) or []
    return {str(i.Name): str(i.Value) for i in items if getattr(i, "Name", None)}


def _child(message: Any, name: str) -> Any:
    if hasattr(message, "tag"):
        for e in message:
            if isinstance(e.tag, str) and e.tag.rpartition("}")[2] == name:
                return e
        return None
    return getattr(message, name, None)


def _notification(msg: Any) -> Notification | None:
    """A NotificationMessage as plain data; None if it names no topic."""
    topic = getattr(getattr(msg, "Topic", None), "_value_1", None)
    if not topic:
        return None
    message = getattr(getattr(msg, "Message", None), "_value_1", None)
    if message is None:
        return Notification(str(topic))
    get = message.get if hasattr(message, "tag") else (
        lambda k, d="": getattr(message, k, d))
    utc = get("UtcTime", "")
    return Notification(str(topic), str(get("PropertyOperation", "") or "Changed"),
                        utc.isoformat() if isinstance(utc, dt.datetime) else str(utc or ""),
                        _items(_child(message, "Source")), _items(_child(message, "Data")))
