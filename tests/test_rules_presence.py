"""Presence from tables: any device with an expected interval goes stale after k x its
interval of silence and back up when heard; the registry runs presence before fire.
Time is a plain number the tests move."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.errors import ConfigError
from gateway.events import Event, Heartbeat, Reading, Severity
from gateway.rules import RuleRegistry
from gateway.rules.fire import DetectorSpec, FireParams, FireRules
from gateway.rules.presence import STALE, PresenceRules, PresenceSpec

T0 = 1_764_000_000.0
DET = "hd-main-03"
METER = "em-b1-01"
ZONE = "main-3f-east"
PARAMS = FireParams(static_threshold_c={"A1": 56.0, "A2": 60.0, "B": 75.0, "C": 90.0})


class Devices:
    """Drives presence (alone or in a registry with fire) and keeps every signal."""

    def __init__(self, *, factor: float = 3.0, with_fire: bool = False) -> None:
        self.presence = PresenceRules(
            [
                PresenceSpec(DET, ZONE, 30.0, "Heat detector", "heartbeat"),
                PresenceSpec(METER, "b1", 5.0, "Energy meter", "poll"),
            ],
            silence_factor=factor,
        )
        modules: list[Any] = [self.presence]
        if with_fire:
            modules.append(FireRules(PARAMS, [DetectorSpec(DET, ZONE, "A1R", 30.0)]))
        self.rules = RuleRegistry(modules)
        self.signals: list[AlertSignal] = []

    def step(self, what: str, at: float, source: str = DET) -> None:
        t = T0 + at
        if what == "tick":
            out = self.rules.tick(t)
        elif what == "beat":
            out = self.rules.observe(Heartbeat(source, t), t)
        elif what == "temp":
            out = self.rules.observe(Reading(source, "temperature", 70.0, "celsius", t), t)
        else:
            raise AssertionError(what)
        self.signals.extend(out)

    def stale(self, source: str = DET) -> list[bool]:
        return [s.active for s in self.signals if s.rule == STALE and s.source == source]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # heartbeat 30 s, factor 3: stale after 90 s; never heard: 90 s after the first
        # tick (start-up grace).
        ([("tick", 0), ("tick", 89.9)], []),
        ([("tick", 0), ("tick", 90)], [True]),
        ([("tick", 0), ("tick", 90), ("tick", 91), ("tick", 500)], [True]),
        ([("tick", 0), ("beat", 50), ("tick", 139)], []),
        ([("tick", 0), ("beat", 50), ("tick", 140)], [True]),
        ([("tick", 0), ("beat", 50), ("tick", 140), ("beat", 150)], [True, False]),
        (
            [("tick", 0), ("tick", 90), ("beat", 100), ("tick", 189), ("tick", 190)],
            [True, False, True],
        ),
        # A device heard before the first tick counts from when it was heard.
        ([("beat", -60), ("tick", 0), ("tick", 30)], [True]),
        # Heard again while not stale: nothing to say.
        ([("tick", 0), ("beat", 10), ("beat", 20), ("tick", 100)], []),
    ],
)
def test_silence_of_a_heat_detector(steps: list[tuple[str, float]], expected: list[bool]) -> None:
    d = Devices()
    for what, at in steps:
        d.step(what, at)
    assert d.stale(DET) == expected


@pytest.mark.parametrize(
    ("factor", "steps", "expected"),
    [
        # A meter polled every 5 s: stale after factor x 5 s, whatever the detector does.
        (3.0, [("tick", 0), ("tick", 14.9)], []),
        (3.0, [("tick", 0), ("tick", 15)], [True]),
        (2.0, [("tick", 0), ("tick", 10)], [True]),
        (2.0, [("tick", 0), ("beat", 9), ("tick", 18.9), ("tick", 19)], [True]),
        (3.0, [("tick", 0), ("tick", 15), ("beat", 16), ("tick", 30), ("tick", 31)],
         [True, False, True]),
    ],
)
def test_silence_of_any_family_uses_its_own_interval(
    factor: float, steps: list[tuple[str, float]], expected: list[bool]
) -> None:
    d = Devices(factor=factor)
    for what, at in steps:
        d.step(what, at, METER)
    assert d.stale(METER) == expected


def test_signals_carry_the_device_state_and_a_summary_in_the_family_s_words() -> None:
    d = Devices()
    d.step("tick", 0)
    d.step("beat", 2, METER)
    d.step("tick", 20)
    d.step("beat", 27, METER)
    down, up = (s for s in d.signals if s.source == METER)
    assert (down.rule, down.active, down.device_state) == (STALE, True, "stale")
    assert (up.active, up.device_state) == (False, "up")
    assert down.severity is Severity.MAJOR
    assert down.zone == "b1"
    assert down.summary == "Energy meter em-b1-01 silent for 18 s (poll every 5 s)"
    assert down.data == {"silent_s": 18.0, "poll_s": 5.0}
    assert up.summary == "Energy meter em-b1-01 heard again after 25 s of silence"


def test_summaries_of_a_device_never_heard() -> None:
    d = Devices()
    d.step("tick", 0)
    d.step("tick", 100)
    d.step("beat", 125)
    down, up = (s for s in d.signals if s.source == DET)
    assert down.summary == (
        "Heat detector hd-main-03 not heard in 100 s since start-up (heartbeat every 30 s)"
    )
    assert down.data == {"silent_s": 100.0, "heartbeat_s": 30.0}
    assert up.summary == "Heat detector hd-main-03 heard again, 125 s after start-up"


def test_in_the_registry_any_item_ends_silence_before_what_it_says() -> None:
    d = Devices(with_fire=True)
    d.step("tick", 0)
    d.step("tick", 100)
    d.step("temp", 120)
    d.step("temp", 125)
    assert [(s.rule, s.active) for s in d.signals if s.source == DET] == [
        (STALE, True),
        (STALE, False),
        ("fire.static", True),
    ]


def test_unknown_sources_and_nothing_changed_share_the_empty_list() -> None:
    d = Devices()
    first = d.presence.observe(Heartbeat(DET, T0), T0)
    stranger = d.presence.observe(Event("fire.detector.alarm", "hd-x", seq=1, time=T0), T0)
    assert first == [] and stranger == []
    assert first is stranger
    assert d.rules.observe(Heartbeat(DET, T0 + 1), T0 + 1) == []


def _firing(source: str) -> Alert:
    return Alert(
        id="01KAAAAAAAAAAAAAAAAAAAAAAA", key=f"{STALE}:{source}", rule=STALE, source=source,
        zone=ZONE, severity=Severity.MAJOR, state=AlertState.FIRING, raised_at=T0 - 3600,
        cleared_at=None, summary="", data={},
    )


def test_restore_lets_a_stale_alert_from_before_a_restart_clear() -> None:
    d = Devices(with_fire=True)
    d.rules.restore([_firing(DET)])
    d.step("beat", 1)
    d.step("tick", 2)
    assert d.stale(DET) == [False]
    assert d.stale(METER) == []


@pytest.mark.parametrize(
    ("specs", "factor", "message"),
    [
        ([PresenceSpec("x", ZONE, 5.0), PresenceSpec("x", ZONE, 9.0)], 3.0, "x: listed twice"),
        ([PresenceSpec("x", ZONE, 0.0)], 3.0, "interval must be positive"),
        ([PresenceSpec("x", ZONE, 5.0)], 0.5, "below 1"),
    ],
)
def test_bad_presence_lists_are_refused(
    specs: list[PresenceSpec], factor: float, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        PresenceRules(specs, silence_factor=factor)


def test_a_module_listed_twice_is_refused() -> None:
    presence = PresenceRules([])
    with pytest.raises(ConfigError, match="listed twice: presence"):
        RuleRegistry([presence, PresenceRules([])])
    assert RuleRegistry([presence]).module("presence") is presence
