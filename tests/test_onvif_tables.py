"""ONVIF's pure parts, from tables: which topics mean what (vendor prefixes and tamper
topics included), the state a message carries, when a subscription is renewed, how far
a camera's clock is off, how each failure of the library is classified, and which
profile is the sub-stream, and which WS-Discovery answers are ours."""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest
import zeep.exceptions

from drivers.onvif.adapter import (
    DeviceInfo,
    OnvifRejected,
    OnvifTimeout,
    Profile,
    SubscriptionGone,
    classify,
)
from drivers.onvif.discovery import Surveyed, entries, parse_matches, render
from drivers.onvif.driver import OnvifMonitor, same_stream
from drivers.onvif.schedule import drift_s, iso_duration, poll_for, renew_in
from drivers.onvif.topics import Notification, bare, meaning_of, state_of
from drivers.rtsp.config import CameraDevice
from gateway.errors import AuthError, Unreachable
from tests.camera_sink import RecordingSink


@pytest.mark.parametrize(("topic", "what"), [
    ("tns1:VideoSource/MotionAlarm", "motion"),
    ("tns1:RuleEngine/CellMotionDetector/Motion", "motion"),
    ("tt:RuleEngine/MotionRegionDetector/Motion", "motion"),
    ("tns1:VideoSource/GlobalSceneChange/ImagingService", "scene_change"),
    ("tns1:VideoSource/GlobalSceneChange/AnalyticsService", "scene_change"),
    ("tns1:VideoSource/ImageTooDark/ImagingService", "too_dark"),
    ("ns2:VideoSource/ImageTooDark/RecordingService", "too_dark"),
    ("tns1:VideoSource/ImageTooBlurry/AnalyticsService", "too_blurry"),
    ("tns1:VideoSource/ImageTooBright/ImagingService", "too_bright"),
    ("tns1:RuleEngine/TamperDetector/Tamper", "tamper"),
    ("tns1:VideoSource/tnsaxis:Tampering", "tamper"),
    # a vendor's own tamper topic, known by its last element
    ("tns1:RuleEngine/tnsvendor:VideoTamper", "tamper"),
    (" tns1:VideoSource/MotionAlarm ", "motion"),
    ("tns1:Device/Trigger/DigitalInput", None),
    ("tns1:VideoSource/ImageTooDark", None),  # no service: not the topic ONVIF defines
    ("", None),
])
def test_topics(topic: str, what: str | None) -> None:
    meaning = meaning_of(topic)
    assert (meaning.what if meaning else None) == what


def test_bare_takes_each_elements_prefix_off() -> None:
    assert bare("tns1:VideoSource/tnsaxis:Tampering") == "VideoSource/Tampering"


@pytest.mark.parametrize(("topic", "data", "state"), [
    ("tns1:RuleEngine/CellMotionDetector/Motion", {"IsMotion": "true"}, True),
    ("tns1:RuleEngine/CellMotionDetector/Motion", {"IsMotion": "false"}, False),
    ("tns1:VideoSource/MotionAlarm", {"State": "1"}, True),
    ("tns1:VideoSource/ImageTooDark/ImagingService", {"State": "TRUE"}, True),
    ("tns1:RuleEngine/TamperDetector/Tamper", {"IsTamper": "false"}, False),
    ("tns1:VideoSource/tnsaxis:Tampering", {"tampering": "1"}, True),
    # one item of another name: a vendor's own state
    ("tns1:RuleEngine/tnsvendor:VideoTamper", {"Active": "on"}, True),
    ("tns1:VideoSource/MotionAlarm", {"State": "maybe"}, None),
    ("tns1:VideoSource/MotionAlarm", {}, None),
    ("tns1:VideoSource/MotionAlarm", {"Level": "3", "Zone": "2"}, None),
])
def test_state(topic: str, data: dict[str, str], state: bool | None) -> None:
    meaning = meaning_of(topic)
    assert meaning is not None
    assert state_of(Notification(topic, data=data), meaning) is state


UTC = dt.UTC
NOW = dt.datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("requested", "current", "termination", "expected"), [
    (600, NOW, NOW + dt.timedelta(seconds=600), 300.0),
    # the camera granted less than asked: its own lifetime counts
    (600, NOW, NOW + dt.timedelta(seconds=60), 30.0),
    # on the camera's clock: an hour of drift does not matter
    (10, NOW - dt.timedelta(hours=1), NOW - dt.timedelta(hours=1) + dt.timedelta(seconds=4),
     2.0),
    (600, None, None, 300.0),  # no times: what was asked for
    (600, NOW, NOW, 300.0),  # nonsense: what was asked for
    (600, NOW, (NOW + dt.timedelta(seconds=8)).replace(tzinfo=None), 300.0),
    (0.2, None, None, 0.5),  # never a busy loop
])
def test_renew_in(requested: float, current: dt.datetime | None,
                  termination: dt.datetime | None, expected: float) -> None:
    assert renew_in(requested, current, termination) == expected


@pytest.mark.parametrize(("poll", "renew_at", "now", "expected"), [
    (30, 1000.0, 100.0, 30),
    (30, 110.0, 100.0, 10),
    (30, 90.0, 100.0, 0.0),
])
def test_poll_for(poll: float, renew_at: float, now: float, expected: float) -> None:
    assert poll_for(poll, renew_at, now) == expected


@pytest.mark.parametrize(("camera", "sent", "received", "expected"), [
    (NOW, NOW.timestamp() - 0.2, NOW.timestamp() + 0.2, 0.0),
    (NOW + dt.timedelta(seconds=120), NOW.timestamp(), NOW.timestamp() + 1.0, 119.5),
    (NOW - dt.timedelta(seconds=45), NOW.timestamp(), NOW.timestamp(), -45.0),
    (NOW.replace(tzinfo=None), NOW.timestamp(), NOW.timestamp(), 0.0),
])
def test_drift(camera: dt.datetime, sent: float, received: float, expected: float) -> None:
    assert drift_s(camera, sent, received) == pytest.approx(expected)


def test_iso_duration() -> None:
    assert [iso_duration(s) for s in (600, 4.4, 0.1)] == ["PT600S", "PT4S", "PT1S"]


def fault(message: str, code: str = "env:Receiver",
          subcodes: list[object] | None = None) -> zeep.exceptions.Fault:
    return zeep.exceptions.Fault(message, code=code, subcodes=subcodes)


@pytest.mark.parametrize(("exc", "what", "kind", "reason"), [
    (fault("Internal error"), "GetProfiles", OnvifRejected, "soap_fault"),
    (fault("Sender not Authorized", "env:Sender", ["ter:NotAuthorized"]), "GetProfiles",
     AuthError, None),
    (fault("The subscription is unknown", "env:Sender",
           ["wsrf-rw:ResourceUnknownFault"]), "PullMessages", SubscriptionGone, "soap_fault"),
    (zeep.exceptions.TransportError("Server returned response (200) with invalid XML",
                                    status_code=200), "GetDeviceInformation", OnvifRejected,
     "malformed_soap"),
    (zeep.exceptions.TransportError("Server returned HTTP status 500 (no content available)",
                                    status_code=500), "GetProfiles", OnvifRejected,
     "http_error"),
    (zeep.exceptions.TransportError("x", status_code=401), "GetProfiles", AuthError, None),
    (zeep.exceptions.TransportError("x", status_code=404), "PullMessages", SubscriptionGone,
     "http_error"),
    (zeep.exceptions.XMLSyntaxError("no envelope"), "GetProfiles", OnvifRejected,
     "malformed_soap"),
    (AttributeError("Manufacturer"), "GetDeviceInformation", OnvifRejected, "malformed_soap"),
    (TimeoutError(), "PullMessages", OnvifTimeout, "timeout"),
    (ConnectionRefusedError(111, "refused"), "GetServices", Unreachable, None),
    (aiohttp.ServerDisconnectedError(), "Renew", Unreachable, None),
])
def test_classify(exc: Exception, what: str, kind: type[Exception], reason: str | None) -> None:
    out = classify(exc, what)
    assert type(out) is kind
    if reason is not None:
        assert out.reason == reason  # type: ignore[attr-defined]
    assert what in str(out)


@pytest.mark.parametrize(("a", "b", "same"), [
    ("rtsp://10.0.0.7/Streaming/Channels/102", "rtsp://10.0.0.7:554/Streaming/Channels/102",
     True),
    ("rtsp://viewer:pw@10.0.0.7/s1", "rtsp://10.0.0.7/s1", True),
    ("rtsp://10.0.0.7/cam?channel=1&subtype=1", "rtsp://10.0.0.7/cam?channel=1&subtype=0",
     False),
    ("rtsp://10.0.0.7:8554/s1", "rtsp://10.0.0.7/s1", False),
    (None, "rtsp://10.0.0.7/s1", False),
])
def test_same_stream(a: str | None, b: str, same: bool) -> None:
    assert same_stream(a, b) is same


def profile(token: str, width: int, height: int, port: int = 554) -> Profile:
    return Profile(token, f"{token}Stream", width, height, "H264",
                   f"rtsp://10.0.0.7:{port}/{token}", f"http://10.0.0.7/snap/{token}.jpg")


def monitor(address: str) -> OnvifMonitor:
    device = CameraDevice(driver="rtsp", id="cam-007", kind="camera", zone="gate",
                          address=address, onvif="http://10.0.0.7/onvif/device_service")
    return OnvifMonitor(device, RecordingSink())


@pytest.mark.parametrize(("address", "profiles", "sub", "snapshot", "warned"), [
    # the site file names the sub-stream: its snapshot, no warning
    ("rtsp://10.0.0.7/sub", [profile("main", 1920, 1080), profile("sub", 640, 360)],
     "sub", "sub", False),
    # it names the main stream: still its snapshot, and a warning
    ("rtsp://10.0.0.7/main", [profile("main", 1920, 1080), profile("sub", 640, 360)],
     "sub", "main", True),
    # none of the camera's streams: a warning, the sub-stream's snapshot
    ("rtsp://10.0.0.7/elsewhere", [profile("main", 1920, 1080), profile("sub", 640, 360)],
     "sub", "sub", True),
    # equal sizes: the one named sub
    ("rtsp://10.0.0.7/sub", [profile("sub", 640, 360), profile("main", 640, 360)],
     "sub", "sub", False),
])
def test_the_sub_stream_is_chosen(address: str, profiles: list[Profile], sub: str,
                                  snapshot: str, warned: bool,
                                  caplog: pytest.LogCaptureFixture) -> None:
    m = monitor(address)
    m._choose(profiles)
    m._choose(profiles)  # a second connection: the warning is not repeated
    assert m.figures.stream_uri == f"rtsp://10.0.0.7:554/{sub}"
    assert m.figures.snapshot_uri == f"http://10.0.0.7/snap/{snapshot}.jpg"
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == int(warned)


def matches(relates: str = "urn:uuid:mine", action: str = "ProbeMatches",
            xaddrs: str = "http://10.0.0.7/onvif/device_service") -> bytes:
    d = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
    a = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
    return (f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="{a}" '
            f'xmlns:d="{d}"><s:Header><a:Action>{d}/{action}</a:Action>'
            f"<a:RelatesTo>{relates}</a:RelatesTo></s:Header><s:Body><d:ProbeMatches>"
            "<d:ProbeMatch><a:EndpointReference><a:Address>urn:uuid:cam7</a:Address>"
            "</a:EndpointReference><d:Scopes>onvif://www.onvif.org/name/Gate%20East "
            "onvif://www.onvif.org/location/main-gatehouse</d:Scopes>"
            f"<d:XAddrs>{xaddrs}</d:XAddrs></d:ProbeMatch></d:ProbeMatches></s:Body>"
            "</s:Envelope>").encode()


@pytest.mark.parametrize(("data", "found"), [
    (matches(), 1),
    (matches(relates="urn:uuid:someone-else"), 0),  # an answer to another Probe
    (matches(action="Hello"), 0),
    (matches(xaddrs="urn:not-http"), 0),  # no address to reach it at
    (b"\x00not xml", 0),
    (b"<a/>", 0),
])
def test_probe_matches(data: bytes, found: int) -> None:
    assert len(parse_matches(data, "urn:uuid:mine")) == found


def test_an_entry_per_camera_read_or_not() -> None:
    [cam] = parse_matches(matches(), "urn:uuid:mine")
    info = DeviceInfo("Maker", "M1", "1.0", "S1", "H1")
    read = Surveyed(cam, info, "rtsp://viewer:pw@10.0.0.7:554/sub")
    unread = Surveyed(cam, error="AuthError: refused")
    [a, b] = entries([read, unread], "viewer", "CAM_PASSWORD")
    assert a == {"driver": "rtsp", "id": "gate-east", "kind": "camera",
                 "zone": "main-gatehouse", "address": "rtsp://10.0.0.7:554/sub",
                 "onvif": "http://10.0.0.7/onvif/device_service", "username": "viewer",
                 "password": {"env": "CAM_PASSWORD"}}
    assert b["id"] != a["id"] and b["enabled"] is False
    text = render([read, unread], "viewer", "CAM_PASSWORD")
    assert "# Maker M1, firmware 1.0, serial S1" in text
    assert "# not read: AuthError: refused" in text and ":pw@" not in text
