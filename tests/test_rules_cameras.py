"""Camera alerts from the stream's transitions, from tables: a lost stream or a low frame
rate that holds for its duration fires, its end clears, a lost stream supersedes a slow
one, and a restart takes over what was firing."""

from __future__ import annotations

import pytest

from gateway.alerts import Alert, AlertState
from gateway.errors import ConfigError
from gateway.events import Event, Reading, Severity
from gateway.rules.cameras import LOW_FPS, STREAM_LOST, CameraRules, CameraSpec

T0 = 1_764_000_000.0


def ev(kind: str, source: str = "cam-001", reason: str = "stalled") -> Event:
    return Event(f"camera.stream.{kind}", source, seq=1, time=T0, data={"reason": reason})


def run(steps: list[tuple[float, str | None]], **for_s: float) -> list[tuple[float, str, bool]]:
    """(time offset, transition or None for a tick) -> (time, rule, active) signalled."""
    rules = CameraRules([CameraSpec("cam-001", "gate")], **for_s)
    out = []
    for t, kind in steps:
        said = rules.tick(T0 + t) if kind is None else rules.observe(ev(kind), T0 + t)
        out += [(t, s.rule, s.active) for s in said]
    return out


@pytest.mark.parametrize(("steps", "expected"), [
    # a reconnect of a second is no alert
    ([(0, "up"), (10, "down"), (11, "up"), (50, None)], []),
    # a stream lost for its 30 s fires on the tick, and clears when it is back
    ([(0, "up"), (10, "down"), (39, None), (40, None), (41, None), (90, "up")],
     [(40, STREAM_LOST, True), (90, STREAM_LOST, False)]),
    # repeated down events while down do not restart the clock
    ([(0, "down"), (20, "down"), (30, None)], [(30, STREAM_LOST, True)]),
    # low frame rate: 60 s
    ([(0, "degraded"), (59, None), (60, None), (70, "up")],
     [(60, LOW_FPS, True), (70, LOW_FPS, False)]),
    # a slow stream that is then lost: the slow alert clears, the lost one starts its clock
    ([(0, "degraded"), (60, None), (61, "down"), (91, None)],
     [(60, LOW_FPS, True), (61, LOW_FPS, False), (91, STREAM_LOST, True)]),
    # back but slow: the lost alert clears
    ([(0, "down"), (30, None), (35, "degraded")],
     [(30, STREAM_LOST, True), (35, STREAM_LOST, False)]),
])
def test_camera_alerts(steps: list[tuple[float, str | None]],
                       expected: list[tuple[float, str, bool]]) -> None:
    assert run(steps) == expected


def test_no_duration_fires_at_once() -> None:
    assert run([(0, "down"), (1, "up")], down_for_s=0) == [
        (0, STREAM_LOST, True), (1, STREAM_LOST, False)]


def test_the_signal_carries_the_camera_its_zone_and_the_reason() -> None:
    rules = CameraRules([CameraSpec("cam-007", "main-gatehouse")], down_for_s=0)
    [signal] = rules.observe(ev("down", "cam-007", "Unreachable: stalled: nothing for 3.1 s"),
                             T0)
    assert (signal.rule, signal.source, signal.zone, signal.severity) == (
        STREAM_LOST, "cam-007", "main-gatehouse", Severity.MAJOR)
    assert "stalled" in signal.summary
    assert signal.data == {"reason": "Unreachable: stalled: nothing for 3.1 s"}


def test_others_are_not_its_business() -> None:
    rules = CameraRules([CameraSpec("cam-001", "gate")], down_for_s=0)
    assert rules.observe(ev("down", "cam-099"), T0) == []
    assert rules.observe(Event("modbus.line.down", "cam-001", seq=1, time=T0), T0) == []
    assert rules.observe(Reading("cam-001", "stream_fps", 2.0, "fps", T0), T0) == []
    assert rules.observe(ev("unit.down"), T0) == []


def test_a_restart_takes_over_a_firing_alert() -> None:
    rules = CameraRules([CameraSpec("cam-001", "gate")])
    rules.restore([Alert("a1", f"{STREAM_LOST}:cam-001", STREAM_LOST, "cam-001", "gate",
                         Severity.MAJOR, AlertState.FIRING, T0, None, "lost", {})])
    assert rules.observe(ev("down"), T0 + 1) == []  # still down: no second alert
    assert rules.tick(T0 + 100) == []
    [clear] = rules.observe(ev("up"), T0 + 200)
    assert (clear.rule, clear.active) == (STREAM_LOST, False)


def test_bad_setup_is_refused() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        CameraRules([CameraSpec("c", "z"), CameraSpec("c", "z")])
    with pytest.raises(ConfigError, match="negative"):
        CameraRules([], down_for_s=-1)


def image(state: str, source: str = "cam-001") -> Event:
    return Event(f"camera.image.{state}", source, seq=1, time=T0, data={"mean": 17.0})


@pytest.mark.parametrize(("states", "expected"), [
    (["black", "ok"], [("camera.picture_black", True), ("camera.picture_black", False)]),
    (["ok"], []),  # good from the start: no news
    (["frozen", "frozen"], [("camera.picture_frozen", True)]),
    (["blurred", "covered", "ok"], [
        ("camera.picture_blurred", True), ("camera.picture_blurred", False),
        ("camera.picture_covered", True), ("camera.picture_covered", False)]),
    (["moved", "ok"], [("camera.picture_moved", True), ("camera.picture_moved", False)]),
    (["moved", "covered"], [  # turned away, then covered: one picture alert at a time
        ("camera.picture_moved", True), ("camera.picture_moved", False),
        ("camera.picture_covered", True)]),
    (["purple"], []),  # a state this module does not know
])
def test_picture_alerts(states: list[str], expected: list[tuple[str, bool]]) -> None:
    rules = CameraRules([CameraSpec("cam-001", "gate")])
    said = [(s.rule, s.active) for n, state in enumerate(states)
            for s in rules.observe(image(state), T0 + n)]
    assert said == expected


def test_a_picture_alert_carries_the_figures_and_its_severity() -> None:
    rules = CameraRules([CameraSpec("cam-001", "gate")])
    [signal] = rules.observe(image("covered"), T0)
    assert (signal.severity, signal.zone, signal.data) == (Severity.MAJOR, "gate",
                                                           {"mean": 17.0})
    [blur] = CameraRules([CameraSpec("cam-001", "gate")]).observe(image("blurred"), T0)
    assert blur.severity is Severity.MINOR
    [moved] = CameraRules([CameraSpec("cam-001", "gate")]).observe(image("moved"), T0)
    assert moved.severity is Severity.MAJOR  # someone may have turned it away


def test_a_restart_takes_over_a_picture_alert() -> None:
    rules = CameraRules([CameraSpec("cam-001", "gate")])
    rules.restore([Alert("a2", "camera.picture_black:cam-001", "camera.picture_black",
                         "cam-001", "gate", Severity.MAJOR, AlertState.FIRING, T0, None,
                         "black", {})])
    assert rules.observe(image("black"), T0 + 1) == []
    [clear] = rules.observe(image("ok"), T0 + 2)
    assert (clear.rule, clear.active) == ("camera.picture_black", False)
