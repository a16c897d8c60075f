"""The fire model from tables: panel points and detector signals in, point alerts and
`fire.confirmed` out, single or double knock per zone, drills, isolations, restore."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import Alert, AlertBook, AlertSignal, AlertState
from gateway.events import Event, Severity
from gateway.rules.fire_model import FireModel, PanelSpec, PointSpec, ZoneSpec, isolations

ZONES = [ZoneSpec("office-a", "main", 1), ZoneSpec("office-b", "main", 2),
         ZoneSpec("drill", "health", 1, test_mode=True)]
POINTS = [
    PointSpec("sd-a1", "office-a", "fp", 1), PointSpec("sd-b1", "office-b", "fp", 2),
    PointSpec("mcp-b1", "office-b", "fp", 3, "manual_call_point"),
    PointSpec("mcp-b2", "office-b", "fp", 4, "manual_call_point"),
    PointSpec("sd-d1", "drill", "fp", 5),
]


def model() -> FireModel:
    return FireModel(ZONES, POINTS, [PanelSpec("fp", "office-a")])


def point(source: str, *bits: str) -> Event:
    return Event("fire.point.status", source, 1, 0.0, Severity.INFO, "", data={"bits": list(bits)})


def detector(source: str, zone: str, active: bool, rule: str = "fire.alarm") -> AlertSignal:
    return AlertSignal(rule, source, zone, Severity.CRITICAL, active)


def said(out: Any) -> list[tuple[str, str, bool]]:
    return [(s.rule, s.source, s.active) for s in out]


def run(m: FireModel, step: Event | AlertSignal) -> list[tuple[str, str, bool]]:
    if isinstance(step, Event):
        return said(m.observe(step, 0.0))
    return said(m.follow(step, 0.0))


CASES: dict[str, list[tuple[Event | AlertSignal, list[tuple[str, str, bool]]]]] = {
    "one panel point confirms a single-knock zone": [
        (point("sd-a1", "fire"), [("fire.point.fire", "sd-a1", True),
                                  ("fire.confirmed", "office-a", True)]),
        (point("sd-a1"), [("fire.point.fire", "sd-a1", False),
                          ("fire.confirmed", "office-a", False)]),
    ],
    "one heat detector confirms a single-knock zone; static and ror count once": [
        (detector("hd-1", "office-a", True), [("fire.confirmed", "office-a", True)]),
        (detector("hd-1", "office-a", True, "fire.static"), []),
        (detector("hd-1", "office-a", False), []),
        (detector("hd-1", "office-a", False, "fire.static"), [("fire.confirmed", "office-a",
                                                                False)]),
    ],
    "a double-knock zone needs a panel point and a detector": [
        (point("sd-b1", "fire"), [("fire.point.fire", "sd-b1", True)]),
        (detector("hd-9", "office-b", True), [("fire.confirmed", "office-b", True)]),
        (detector("hd-9", "office-b", False), []),
        (point("sd-b1"), [("fire.point.fire", "sd-b1", False),
                          ("fire.confirmed", "office-b", False)]),
    ],
    "a detector and a manual call point confirm a double-knock zone": [
        (point("mcp-b1", "fire"), [("fire.point.fire", "mcp-b1", True)]),
        (detector("hd-9", "office-b", True, "fire.ror"), [("fire.confirmed", "office-b", True)]),
    ],
    "two manual call points alone do not": [
        (point("mcp-b1", "fire"), [("fire.point.fire", "mcp-b1", True)]),
        (point("mcp-b2", "fire"), [("fire.point.fire", "mcp-b2", True)]),
    ],
    "the same detector twice is one trigger": [
        (detector("hd-9", "office-b", True), []),
        (detector("hd-9", "office-b", True, "fire.static"), []),
    ],
    "faults, isolations and tests are alerts, not fires": [
        (point("sd-a1", "fault", "isolated"), [("fire.point.fault", "sd-a1", True),
                                               ("fire.point.isolated", "sd-a1", True)]),
        (point("sd-a1", "isolated", "test"), [("fire.point.fault", "sd-a1", False),
                                              ("fire.point.test", "sd-a1", True)]),
        (point("sd-a1", "isolated", "started", "feedback"), [("fire.point.test", "sd-a1",
                                                              False)]),
    ],
    "unknown points and zones are ignored": [
        (point("sd-zz", "fire"), []),
        (detector("hd-x", "elsewhere", True), []),
        (AlertSignal("device.stale", "hd-1", "office-a", Severity.MINOR, True), []),
    ],
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_fire_model(steps: list[tuple[Event | AlertSignal, list[tuple[str, str, bool]]]]) -> None:
    m = model()
    for step, want in steps:
        assert run(m, step) == want, step


def test_the_contract_of_fire_confirmed() -> None:
    m = model()
    m.follow(detector("hd-9", "office-b", True), 0.0)
    out = m.observe(point("sd-b1", "fire"), 0.0)
    signal = out[-1]
    assert signal == AlertSignal(
        rule="fire.confirmed", source="office-b", zone="office-b", severity=Severity.CRITICAL,
        active=True, summary=signal.summary,
        data={"building": "main", "drill": False, "triggers": ["hd-9", "sd-b1"]})


def test_a_zone_in_test_mode_marks_its_fire_as_a_drill() -> None:
    m = model()
    out = m.observe(point("sd-d1", "fire"), 0.0)
    assert out[-1].rule == "fire.confirmed" and out[-1].data["drill"] is True
    assert out[-1].data["building"] == "health"


def test_severities_follow_the_point_bits() -> None:
    m = model()
    out = m.observe(point("sd-a1", "fire", "fault", "supervisory", "power_fault", "test"), 0.0)
    sev = {s.rule: s.severity for s in out}
    assert sev == {"fire.point.fire": Severity.CRITICAL, "fire.point.fault": Severity.MAJOR,
                   "fire.point.supervisory": Severity.MAJOR,
                   "fire.point.power_fault": Severity.MAJOR, "fire.point.test": Severity.INFO,
                   "fire.confirmed": Severity.CRITICAL}


def test_panel_power_and_bus_faults() -> None:
    m = model()
    ev = Event("fire.panel.status", "fp", 1, 0.0, data={"bits": ["main_power_fault", "manual"]})
    out = m.observe(ev, 0.0)
    assert {(s.rule, s.severity) for s in out} == {("fire.panel.main_power", Severity.MAJOR),
                                                   ("fire.panel.manual", Severity.MINOR)}
    ev = Event("fire.panel.status", "fp", 2, 0.0, data={"bits": ["bus_fault"]})
    assert sorted(said(m.observe(ev, 0.0))) == [
        ("fire.panel.bus_fault", "fp", True), ("fire.panel.main_power", "fp", False),
        ("fire.panel.manual", "fp", False)]


def _firing(signal: AlertSignal) -> Alert:
    return Alert("id", signal.key, signal.rule, signal.source, signal.zone, signal.severity,
                 AlertState.FIRING, 5.0, None, signal.summary, signal.data)


def test_restore_rebuilds_the_zones_from_the_firing_alerts() -> None:
    m = model()
    out = [*m.follow(detector("hd-9", "office-b", True), 0.0),
           *m.observe(point("sd-b1", "fire"), 0.0)]
    fresh = model()
    fresh.restore([_firing(s) for s in out] + [_firing(detector("hd-9", "office-b", True))])
    # Nothing new when the panel repeats itself after the restart.
    assert said(fresh.observe(point("sd-b1", "fire"), 1.0)) == []
    assert said(fresh.follow(detector("hd-9", "office-b", False), 1.0)) == []
    assert said(fresh.observe(point("sd-b1"), 2.0)) == [("fire.point.fire", "sd-b1", False),
                                                        ("fire.confirmed", "office-b", False)]


def test_isolations_are_listed_by_zone_with_their_start() -> None:
    m = model()
    book = AlertBook()
    for t, source in ((10.0, "sd-b1"), (20.0, "sd-a1"), (30.0, "mcp-b1")):
        for signal in m.observe(point(source, "isolated"), t):
            book.apply(signal, t)
    view = isolations(book.active(), {"office-b": "Office B"})
    assert view["total"] == 3
    assert [z["zone"] for z in view["zones"]] == ["office-a", "office-b"]
    office_b = view["zones"][1]
    assert office_b["zone_name"] == "Office B"
    assert [(p["point"], p["since"]) for p in office_b["isolated"]] == [("sd-b1", 10.0),
                                                                       ("mcp-b1", 30.0)]



def test_panel_faults_are_standing_risks_beside_the_isolations() -> None:
    m = model()
    book = AlertBook()
    steps = ((10.0, Event("fire.panel.status", "fp", 1, 0.0, data={"bits": ["bus_fault"]})),
             (20.0, point("sd-b1", "power_fault", "isolated")),
             (30.0, point("sd-a1", "fault")))  # a plain fault is an alert, not a standing risk
    for t, ev in steps:
        for signal in m.observe(ev, t):
            book.apply(signal, t)
    view = isolations(book.active(), {"office-b": "Office B"})
    assert [(f["rule"], f["source"], f["zone_name"], f["since"]) for f in view["panel_faults"]] \
        == [("fire.panel.bus_fault", "fp", "office-a", 10.0),
            ("fire.point.power_fault", "sd-b1", "Office B", 20.0)]
    assert view["total"] == 1
    # A generator of alerts is read once for both lists.
    view = isolations(iter(book.active()), {})
    assert view["total"] == 1 and len(view["panel_faults"]) == 2
    for t, ev in ((40.0, Event("fire.panel.status", "fp", 2, 0.0, data={"bits": []})),
                  (50.0, point("sd-b1", "isolated"))):
        for signal in m.observe(ev, t):
            book.apply(signal, t)
    assert isolations(book.active(), {})["panel_faults"] == []


TRIGGERS = [("sd-b1", "panel"), ("mcp-b1", "panel"), ("mcp-b2", "panel"),
            ("hd-8", "detector"), ("hd-9", "detector")]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TRIGGERS), st.booleans()), max_size=40))
def test_confirmation_follows_the_triggers_in_a_double_knock_zone(
        steps: list[tuple[tuple[str, str], bool]]) -> None:
    m = model()
    burning: dict[str, str] = {}
    confirmed = False
    for (source, via), on in steps:
        if via == "panel":
            out = m.observe(point(source, *(["fire"] if on else [])), 0.0)
        else:
            out = m.follow(detector(source, "office-b", on), 0.0)
        if on:
            burning[source] = "mcp" if source.startswith("mcp") else "detector"
        else:
            burning.pop(source, None)
        changes = [s.active for s in out if s.rule == "fire.confirmed"]
        assert len(changes) <= 1
        if changes:
            assert changes[0] != confirmed  # it alternates: never raised or cleared twice
            confirmed = changes[0]
        if confirmed:
            assert burning  # never confirmed without a trigger in fire
        else:
            # Not confirmed: never two triggers with a detector among them.
            assert len(burning) < 2 or "detector" not in burning.values()
