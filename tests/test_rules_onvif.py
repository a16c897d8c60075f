"""The camera rules for what ONVIF tells, from tables: the camera's own tamper, scene
change and picture-quality events alert until their end, motion never does, and a
drifting clock alerts beyond its limit and clears within 80% of it."""

from __future__ import annotations

import pytest

from gateway.alerts import Alert, AlertState
from gateway.errors import ConfigError
from gateway.events import Event, Reading, Severity
from gateway.rules.cameras import CLOCK_DRIFT, CameraRules, CameraSpec, drift_verdict

T0 = 1_764_000_000.0


def rules(**kw: float) -> CameraRules:
    return CameraRules([CameraSpec("cam-001", "gate")], **kw)


def signals(steps: list[str]) -> list[tuple[str, bool]]:
    r = rules()
    out = []
    for kind in steps:
        out += [(s.rule, s.active)
                for s in r.observe(Event(kind, "cam-001", seq=1, time=T0), T0)]
    return out


@pytest.mark.parametrize(("steps", "expected"), [
    (["camera.tamper", "camera.tamper.end"],
     [("camera.tampering", True), ("camera.tampering", False)]),
    # repeated news of the same state is no news
    (["camera.tamper", "camera.tamper", "camera.tamper.end", "camera.tamper.end"],
     [("camera.tampering", True), ("camera.tampering", False)]),
    (["camera.scene_change"], [("camera.scene_changed", True)]),
    (["camera.too_dark", "camera.too_blurry", "camera.too_dark.end"],
     [("camera.too_dark", True), ("camera.too_blurry", True), ("camera.too_dark", False)]),
    (["camera.too_bright"], [("camera.too_bright", True)]),
    # motion is an event, never an alert
    (["camera.motion", "camera.motion.end"], []),
    # an end without a start clears nothing
    (["camera.tamper.end"], []),
    (["camera.onvif.info", "camera.onvif.down"], []),
])
def test_onvif_events(steps: list[str], expected: list[tuple[str, bool]]) -> None:
    assert signals(steps) == expected


def test_tampering_is_major_and_in_the_cameras_zone() -> None:
    [s] = rules().observe(Event("camera.tamper", "cam-001", seq=1, time=T0,
                                data={"topic": "RuleEngine/TamperDetector/Tamper"}), T0)
    assert (s.source, s.zone, s.severity) == ("cam-001", "gate", Severity.MAJOR)
    assert s.data == {"topic": "RuleEngine/TamperDetector/Tamper"}


@pytest.mark.parametrize(("drift", "max_s", "firing", "expected"), [
    (0.0, 30, False, False),
    (30.0, 30, False, False),  # at the limit: not beyond it
    (30.5, 30, False, True),
    (-45.0, 30, False, True),  # behind counts as much as ahead
    (29.0, 30, True, True),  # firing: stays until within 80%
    (24.1, 30, True, True),
    (24.0, 30, True, False),
    (-10.0, 30, True, False),
])
def test_drift_verdict(drift: float, max_s: float, firing: bool, expected: bool) -> None:
    assert drift_verdict(drift, max_s, firing) is expected


def reading(value: float, source: str = "cam-001") -> Reading:
    return Reading(source, "clock_drift_s", value, "s", T0)


@pytest.mark.parametrize(("values", "expected"), [
    ([0.4, 1.0, -2.0], []),
    ([120.0, 119.0, 0.0], [(CLOCK_DRIFT, True), (CLOCK_DRIFT, False)]),
    ([31.0, 26.0, 31.0, 20.0], [(CLOCK_DRIFT, True), (CLOCK_DRIFT, False)]),
    ([-300.0, 300.0], [(CLOCK_DRIFT, True)]),
])
def test_drift_alert(values: list[float], expected: list[tuple[str, bool]]) -> None:
    r = rules()
    out = []
    for v in values:
        out += [(s.rule, s.active) for s in r.observe(reading(v), T0)]
    assert out == expected


def test_drift_limit_from_the_site_file_and_its_summary() -> None:
    r = rules(clock_drift_max_s=5)
    [s] = r.observe(reading(-6.0), T0)
    assert s.summary == "Camera cam-001: clock 6 s behind"
    assert s.data == {"clock_drift_s": -6.0, "max_s": 5}
    assert r.observe(reading(1.0, "cam-009"), T0) == []
    assert r.observe(Reading("cam-001", "stream_fps", 99.0, "fps", T0), T0) == []
    with pytest.raises(ConfigError):
        rules(clock_drift_max_s=0)


def test_a_restart_takes_over_what_was_firing() -> None:
    r = rules()
    r.restore([
        Alert("a1", "camera.tampering:cam-001", "camera.tampering", "cam-001", "gate",
              Severity.MAJOR, AlertState.FIRING, T0, None, "t", {}),
        Alert("a2", f"{CLOCK_DRIFT}:cam-001", CLOCK_DRIFT, "cam-001", "gate",
              Severity.MINOR, AlertState.FIRING, T0, None, "d", {})])
    assert [(s.rule, s.active) for s in r.observe(
        Event("camera.tamper.end", "cam-001", seq=1, time=T0), T0)] == [
        ("camera.tampering", False)]
    assert [(s.rule, s.active) for s in r.observe(reading(0.0), T0)] == [(CLOCK_DRIFT, False)]
