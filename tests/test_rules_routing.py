"""The rule registry shows an item only to the modules that can speak on its source.

`Addressed` modules name their devices; the others see every item. The property: for
any sequence of items and ticks, a registry that routes by source says exactly what the
same modules say when every one of them is shown every item. Pure: no pipeline."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import Alert, AlertSignal
from gateway.events import Event, Heartbeat, Reading, Severity
from gateway.rules import Addressed, Follower, RuleModule, RuleRegistry, Verdict
from gateway.rules.fire import DetectorSpec, FireParams, FireRules
from gateway.rules.fire_model import FireModel, ZoneSpec
from gateway.rules.presence import PresenceRules, PresenceSpec


@dataclass
class Recorder:
    """Records which items it was shown; says `seen` on items whose metric is `speak`."""

    name: str
    only: frozenset[str] | None = None
    shown: list[str] = field(default_factory=list)

    def restore(self, firing: Iterable[Alert]) -> None:
        pass

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        self.shown.append(item.source)
        if isinstance(item, Reading) and item.metric == "speak":
            return [AlertSignal(f"{self.name}.seen", item.source, "z", Severity.MINOR, True)]
        return []

    def tick(self, now: float) -> Sequence[Verdict]:
        return []


@dataclass
class AddressedRecorder(Recorder):
    def sources(self) -> Collection[str]:
        assert self.only is not None
        return self.only


def reading(source: str, metric: str = "speak", value: float = 1.0) -> Reading:
    return Reading(source, metric, value, "", 0.0)


def test_an_item_is_shown_only_to_the_modules_that_know_its_source() -> None:
    first = AddressedRecorder("first", frozenset({"hd-01"}))
    everyone = Recorder("everyone")
    last = AddressedRecorder("last", frozenset({"hd-01", "hd-02"}))
    rules = RuleRegistry([first, everyone, last])
    assert isinstance(first, Addressed) and not isinstance(everyone, Addressed)

    cases = [
        ("hd-01", ["first", "everyone", "last"]),
        ("hd-02", ["everyone", "last"]),
        ("gate-north", ["everyone"]),  # nobody addressed knows it
    ]
    for source, hearers in cases:
        for m in (first, everyone, last):
            m.shown.clear()
        said = rules.observe(reading(source), 0.0)
        assert [m.name for m in rules.hearers(source)] == hearers
        assert [m.name for m in (first, everyone, last) if m.shown] == hearers
        # What they say comes in the registry's order.
        assert [v.rule for v in said if isinstance(v, AlertSignal)] == [
            f"{h}.seen" for h in hearers]


def test_nothing_said_is_the_shared_empty_answer() -> None:
    rules = RuleRegistry([AddressedRecorder("a", frozenset({"hd-01"})), Recorder("b")])
    assert rules.observe(reading("hd-01", "temperature"), 0.0) == []
    assert rules.observe(reading("nobody", "temperature"), 0.0) == []


class Everyone:
    """Hides a module's `sources`: the registry then shows it every item."""

    def __init__(self, inner: RuleModule) -> None:
        self.inner = inner
        self.name = inner.name

    def restore(self, firing: Iterable[Alert]) -> None:
        self.inner.restore(firing)

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        return self.inner.observe(item, now)

    def tick(self, now: float) -> Sequence[Verdict]:
        return self.inner.tick(now)


class EveryoneFollowing(Everyone):
    def follow(self, signal: AlertSignal, now: float) -> Sequence[Verdict]:
        assert isinstance(self.inner, Follower)
        return self.inner.follow(signal, now)


DETECTORS = ("hd-01", "hd-02", "hd-03")
PARAMS = FireParams(static_threshold_c={"A1": 56.0, "A2": 60.0, "B": 75.0, "C": 90.0})


def modules() -> list[RuleModule]:
    return [
        PresenceRules([PresenceSpec(d, "zone-a", 30.0, "Heat detector") for d in DETECTORS]),
        FireRules(PARAMS, [DetectorSpec(d, "zone-a", "A1R", 30.0) for d in DETECTORS]),
        FireModel([ZoneSpec("zone-a", "main")]),
    ]


def unrouted(inner: list[RuleModule]) -> RuleRegistry:
    return RuleRegistry([EveryoneFollowing(m) if isinstance(m, Follower) else Everyone(m)
                         for m in inner])


SOURCES = st.sampled_from([*DETECTORS, "hd-99", "mqtt:site"])
KINDS = st.sampled_from(["fire.detector.alarm", "fire.detector.alarm_cleared",
                         "fire.detector.fault", "fire.detector.fault_cleared",
                         "mqtt.session.lost"])
STEPS = st.one_of(
    st.tuples(st.just("reading"), SOURCES, st.sampled_from(["temperature", "battery"]),
              st.floats(-20, 120)),
    st.tuples(st.just("event"), SOURCES, KINDS, st.just(0.0)),
    st.tuples(st.just("heartbeat"), SOURCES, st.just(""), st.just(0.0)),
    st.tuples(st.just("tick"), st.just(""), st.just(""), st.floats(0, 200)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(STEPS, max_size=60))
def test_routing_says_what_showing_everyone_everything_says(
        steps: list[tuple[str, str, str, float]]) -> None:
    routed, everyone = RuleRegistry(modules()), unrouted(modules())
    now = 1000.0
    for seq, (what, source, detail, value) in enumerate(steps, 1):
        now += 1.0
        if what == "tick":
            now += value
            assert routed.tick(now) == everyone.tick(now)
            continue
        item: Event | Reading | Heartbeat
        if what == "reading":
            item = Reading(source, detail, value, "celsius", now)
        elif what == "event":
            item = Event(kind=detail, source=source, seq=seq, time=now, id=f"e{seq}")
        else:
            item = Heartbeat(source, now)
        assert routed.observe(item, now) == everyone.observe(item, now)
