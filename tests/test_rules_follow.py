"""The follower seam of the rule registry: a module that reads other modules' alert
signals (the fire model following detector alarms; the barrier linkage following a
confirmed fire). Pure: no pipeline, no network."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.alerts import Alert, AlertSignal
from gateway.commands import Command
from gateway.events import Event, Heartbeat, Reading, Severity
from gateway.rules import MAX_FOLLOW_DEPTH, Follower, RuleRegistry, Verdict


def alarm(source: str, active: bool = True) -> AlertSignal:
    return AlertSignal("fire.alarm", source, "main-a", Severity.CRITICAL, active)


@dataclass
class Detectors:
    """Says `fire.alarm` for every event whose kind is `alarm` (a stand-in for FireRules)."""

    name: str = "fire"

    def restore(self, firing: Iterable[Alert]) -> None:
        pass

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        if isinstance(item, Event) and item.kind in ("alarm", "clear"):
            return [alarm(item.source, item.kind == "alarm")]
        return []

    def tick(self, now: float) -> Sequence[Verdict]:
        return [alarm("tick-det")] if now >= 100 else []


@dataclass
class Confirm:
    """Two detectors in alarm confirm a fire; follows `fire.alarm`."""

    name: str = "model"
    alarming: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)

    def restore(self, firing: Iterable[Alert]) -> None:
        pass

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        return []

    def tick(self, now: float) -> Sequence[Verdict]:
        return []

    def follow(self, signal: AlertSignal, now: float) -> Sequence[Verdict]:
        self.seen.append(signal.rule)
        if signal.rule != "fire.alarm":
            return []
        before = len(self.alarming) >= 2
        (self.alarming.add if signal.active else self.alarming.discard)(signal.source)
        after = len(self.alarming) >= 2
        if before == after:
            return []
        return [AlertSignal("model.confirmed", "main", "main-a", Severity.CRITICAL, after)]


@dataclass
class Linkage:
    """Opens the barrier on a confirmed fire; follows `model.confirmed`."""

    name: str = "linkage"
    seen: list[str] = field(default_factory=list)

    def restore(self, firing: Iterable[Alert]) -> None:
        pass

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        return []

    def tick(self, now: float) -> Sequence[Verdict]:
        return []

    def follow(self, signal: AlertSignal, now: float) -> Sequence[Verdict]:
        self.seen.append(signal.rule)
        if signal.rule == "model.confirmed" and signal.active:
            return [Command("gate-north", "open", who="linkage", why="confirmed fire")]
        return []


@dataclass
class Echo:
    """A follower that answers every signal with one of its own: a cycle with itself
    and any other echo."""

    name: str
    said: int = 0

    def restore(self, firing: Iterable[Alert]) -> None:
        pass

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        return []

    def tick(self, now: float) -> Sequence[Verdict]:
        return []

    def follow(self, signal: AlertSignal, now: float) -> Sequence[Verdict]:
        self.said += 1
        return [AlertSignal(f"{self.name}.echo", signal.source, "z", Severity.INFO, True)]


def ev(kind: str, source: str) -> Event:
    return Event(kind=kind, source=source, seq=1, time=1.0, zone="main-a")


def test_a_module_without_follow_is_not_a_follower() -> None:
    assert not isinstance(Detectors(), Follower)
    assert isinstance(Confirm(), Follower)


def test_signals_cascade_alarm_to_confirmation_to_command_in_order() -> None:
    model, linkage = Confirm(), Linkage()
    rules = RuleRegistry([Detectors(), model, linkage])
    first = rules.observe(ev("alarm", "det-1"), 1.0)
    assert first == [alarm("det-1")]
    second = rules.observe(ev("alarm", "det-2"), 2.0)
    assert second == [
        alarm("det-2"),
        AlertSignal("model.confirmed", "main", "main-a", Severity.CRITICAL, True),
        Command("gate-north", "open", who="linkage", why="confirmed fire"),
    ]
    cleared = rules.observe(ev("clear", "det-1"), 3.0)
    assert cleared == [
        alarm("det-1", False),
        AlertSignal("model.confirmed", "main", "main-a", Severity.CRITICAL, False),
    ]


def test_a_follower_is_never_shown_its_own_signals() -> None:
    model, linkage = Confirm(), Linkage()
    rules = RuleRegistry([Detectors(), model, linkage])
    rules.observe(ev("alarm", "det-1"), 1.0)
    rules.observe(ev("alarm", "det-2"), 2.0)
    assert model.seen == ["fire.alarm", "fire.alarm"]
    assert linkage.seen == ["fire.alarm", "fire.alarm", "model.confirmed"]


def test_tick_signals_are_followed_too() -> None:
    model = Confirm()
    rules = RuleRegistry([Detectors(), model])
    assert rules.tick(50.0) == []
    assert rules.tick(100.0) == [alarm("tick-det")]
    assert model.seen == ["fire.alarm"]


def test_a_cycle_between_followers_stops_at_the_depth_limit() -> None:
    a, b = Echo("a"), Echo("b")
    rules = RuleRegistry([Detectors(), a, b])
    out = rules.observe(ev("alarm", "det-1"), 1.0)
    # Round 1: a and b each echo the alarm; every later round each echoes the other's.
    assert a.said == MAX_FOLLOW_DEPTH and b.said == MAX_FOLLOW_DEPTH
    assert len(out) == 1 + 2 * MAX_FOLLOW_DEPTH


def test_nothing_said_means_nothing_followed() -> None:
    model = Confirm()
    rules = RuleRegistry([Detectors(), model])
    assert rules.observe(ev("telemetry", "det-1"), 1.0) == []
    assert model.seen == []
