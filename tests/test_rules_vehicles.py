"""The vehicle rules from tables: who is let in at which gate, occupancy from entries and
exits, the gate alerts, and the fire linkage from tables of `fire.confirmed` signals (the
fire model's contract). Time is a plain number the tests move."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.commands import Command
from gateway.events import Event, Severity
from gateway.rules import RuleRegistry
from gateway.rules.vehicles import (
    FIRE_HOLD,
    HELD_OPEN,
    JAMMED,
    LINKAGE_FAILED,
    OVERSTAY,
    REFUSED,
    RESULT_TIMEOUT_S,
    TAILGATE,
    GatePolicy,
    GateRuleSpec,
    StoredRead,
    VehicleRules,
)
from gateway.vehicles.plates import PlateKind
from gateway.vehicles.privacy import Pseudonyms
from gateway.vehicles.registry import ANY, Vehicle, VehicleClass

T0 = 1_764_000_000.0
GATES = [
    GateRuleSpec("gate-main-in", "main-gatehouse"),
    GateRuleSpec("gate-main-out", "main-gatehouse", direction="out"),
    GateRuleSpec("gate-parking-b1", "main-parking-b1", area="main-parking-b1",
                 reports_loop=True),
    GateRuleSpec("gate-suv-lot", "suv-lot-north", area="suv-lot-north"),
]
SPEC = {g.id: g for g in GATES}


def vehicle(plate: str, vclass: VehicleClass, gates: set[str] | None = None,
            zones: set[str] | None = None, until: float | None = None,
            since: float | None = None) -> Vehicle:
    return Vehicle(plate, PlateKind.ORDINARY, "unit", vclass, frozenset(gates or {ANY}),
                   frozenset(zones or {ANY}), since, until)


VEHICLES = [
    vehicle("湘A12345", VehicleClass.OFFICIAL, zones={"main-parking-f1", "main-parking-b1"}),
    vehicle("湘A8B8B8", VehicleClass.STAFF, gates={"gate-main-in", "gate-main-out"}),
    vehicle("湘A66666", VehicleClass.SUV, zones={"suv-lot-north"}),
    vehicle("湘A59999", VehicleClass.BARRED),
    vehicle("湘A00001", VehicleClass.VISITOR, since=T0 - 3600, until=T0 + 3600),
    vehicle("湘A00002", VehicleClass.VISITOR, since=T0 + 3600, until=T0 + 7200),
]


def rules(policy: GatePolicy | None = None, names: Pseudonyms | None = None) -> VehicleRules:
    return VehicleRules(GATES, policy or GatePolicy(), VEHICLES,
                        names or Pseudonyms(b"k" * 32))


def plate(gate: str, text: str, seq: int = 1, **data: Any) -> Event:
    return Event("gate.plate", gate, seq=seq, time=T0, zone=SPEC[gate].zone,
                 data={"plate": text, "pictures": ["2026-12-03/x-0.jpg"], **data})


def event(kind: str, gate: str, **data: Any) -> Event:
    return Event(kind, gate, seq=1, time=T0, data=data)


@pytest.mark.parametrize(
    ("gate", "read", "low", "allow", "why"),
    [
        ("gate-main-in", "湘A8B8B8", False, True, "staff"),
        ("gate-main-in", "湘A12345", False, True, "official"),
        ("gate-parking-b1", "湘A12345", False, True, "official"),
        ("gate-parking-b1", "湘A8B8B8", False, False, "not allowed at gate-parking-b1"),
        ("gate-parking-b1", "湘A66666", False, False, "does not park in main-parking-b1"),
        ("gate-suv-lot", "湘A66666", False, True, "suv"),
        ("gate-suv-lot", "湘A12345", False, False, "does not park in suv-lot-north"),
        ("gate-main-in", "湘A59999", False, False, "is barred"),
        ("gate-main-in", "湘A00001", False, True, "visitor"),
        ("gate-main-in", "湘A00002", False, False, "not valid now"),  # pass starts later
        ("gate-main-in", "鄂B54321", False, False, "not registered"),
        ("gate-main-in", "", False, False, "no plate read"),
        # fuzzy: staff and official may open on one confusion, others not
        ("gate-main-in", "湘A8B888", False, True, "fuzzy"),
        ("gate-main-in", "湘AI2345", False, True, "fuzzy"),
        ("gate-suv-lot", "湘AG6666", False, False, "fuzzy matches open only for official"),
        ("gate-main-in", "湘AS9999", False, False, "fuzzy matches open only"),  # barred
        ("gate-main-in", "鄂A12345", False, False, "not registered"),
        ("gate-main-in", "鄂A12345", True, True, "fuzzy"),
        ("gate-main-in", "湘AIZ345", False, False, "not registered"),  # two edits
        # leaving: every registered vehicle, barred or not
        ("gate-main-out", "湘A59999", False, True, "leaving"),
        ("gate-main-out", "鄂B54321", False, False, "not registered"),
    ],
)
def test_judge(gate: str, read: str, low: bool, allow: bool, why: str) -> None:
    j = rules().judge(SPEC[gate], read, T0, province_low_confidence=low)
    assert (j.allow, why in j.why) == (allow, True), j.why


def test_an_authorised_read_opens_and_a_refused_one_alerts_with_its_picture() -> None:
    r = rules()
    [cmd] = r.observe(plate("gate-main-in", "湘A8B8B8"), T0)
    assert isinstance(cmd, Command) and (cmd.device, cmd.action, cmd.who) == (
        "gate-main-in", "open", "rule:vehicles")
    [signal] = r.observe(plate("gate-main-in", "鄂B54321", 2), T0 + 1)
    assert isinstance(signal, AlertSignal) and signal.rule == REFUSED and signal.active
    assert signal.data["pictures"] == ["2026-12-03/x-0.jpg"]
    assert signal.data["plate"] == "鄂B54321" and signal.severity is Severity.MAJOR
    # A second refusal replaces the first (the desk sees the new car), a pass clears it.
    second = r.observe(plate("gate-main-in", "鄂B11111", 3), T0 + 2)
    assert [(s.rule, s.active) for s in second] == [(REFUSED, False), (REFUSED, True)]
    opened = r.observe(event("gate.manual_open", "gate-main-in", who="wang"), T0 + 3)
    assert [(s.rule, s.active, s.summary) for s in opened] == [
        (REFUSED, False, "opened by hand by wang")]
    assert r.occupancy()["compound"] == 2


def test_plates_stay_out_of_summaries_and_reasons_and_forwarding_can_hide_them() -> None:
    names = Pseudonyms(b"k" * 32, forward=True)
    r = rules(names=names)
    [cmd] = r.observe(plate("gate-main-in", "湘A8B8B8"), T0)
    assert isinstance(cmd, Command) and "湘" not in cmd.why and names.ref("湘A8B8B8") in cmd.why
    [signal] = r.observe(plate("gate-main-in", "鄂B54321", 2), T0)
    assert isinstance(signal, AlertSignal)
    assert "鄂" not in signal.summary and "鄂" not in str(signal.data)
    assert signal.data["plate"] == names.ref("鄂B54321")
    assert rules().observe(plate("gate-main-in", "鄂B54321"), T0)[0].data[  # type: ignore[union-attr]
        "plate"] == "鄂B54321"


def test_an_offline_replay_is_never_an_open_nor_a_count() -> None:
    r = rules()
    assert r.observe(plate("gate-main-in", "湘A12345", offline=True), T0) == []
    assert r.observe(plate("gate-main-in", "鄂B54321", offline=True), T0) == []
    assert r.occupancy() == {"compound": 0, "main-parking-b1": 0, "suv-lot-north": 0}


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([("gate-main-in", "湘A8B8B8"), ("gate-main-in", "湘A12345")], {"compound": 2}),
        ([("gate-main-in", "湘A8B8B8"), ("gate-main-out", "湘A8B8B8")], {"compound": 0}),
        ([("gate-main-out", "湘A8B8B8")], {"compound": 0}),  # never below zero
        ([("gate-main-in", "湘A12345"), ("gate-parking-b1", "湘A12345")],
         {"compound": 1, "main-parking-b1": 1}),
        ([("gate-main-in", "鄂B54321")], {"compound": 0}),  # refused: not inside
        ([("gate-suv-lot", "湘A66666"), ("gate-suv-lot", "湘A66666")], {"suv-lot-north": 2}),
    ],
)
def test_occupancy_from_entries_and_exits(steps: list[tuple[str, str]],
                                          expected: dict[str, int]) -> None:
    r = rules()
    for n, (gate, text) in enumerate(steps):
        r.observe(plate(gate, text, n + 1), T0 + n)
    assert {k: v for k, v in r.occupancy().items() if k in expected} == expected


def test_a_car_let_in_by_hand_is_let_out() -> None:
    r = rules()
    r.observe(plate("gate-main-in", "鄂B54321"), T0)
    r.observe(event("gate.manual_open", "gate-main-in", who="wang", plate="鄂B54321"), T0)
    [cmd] = r.observe(plate("gate-main-out", "鄂B54321", 2), T0 + 60)
    assert isinstance(cmd, Command) and "leaving after a manual entry" in cmd.why


def test_a_barrier_that_does_not_move_is_jammed_until_it_does() -> None:
    r = rules()
    [jam] = r.observe(event("gate.state", "gate-main-in", state="closed", commanded="open",
                            status="failed"), T0)
    assert isinstance(jam, AlertSignal) and (jam.rule, jam.active) == (JAMMED, True)
    assert r.observe(event("gate.state", "gate-main-in", state="closed", commanded="open",
                           status="failed"), T0 + 1) == []
    [ok] = r.observe(event("gate.state", "gate-main-in", state="open", commanded="open",
                           status="verified"), T0 + 2)
    assert isinstance(ok, AlertSignal) and (ok.rule, ok.active) == (JAMMED, False)


def test_held_open_after_t_then_cleared_when_closed() -> None:
    r = rules(GatePolicy(held_open_s=60))
    r.observe(event("gate.state", "gate-suv-lot", state="open"), T0)
    assert r.tick(T0 + 59) == []
    [held] = r.tick(T0 + 60)
    assert isinstance(held, AlertSignal) and (held.rule, held.active) == (HELD_OPEN, True)
    assert r.tick(T0 + 61) == []
    [closed] = r.observe(event("gate.state", "gate-suv-lot", state="closed"), T0 + 70)
    assert isinstance(closed, AlertSignal) and not closed.active


def test_a_passage_without_an_opened_read_is_tailgating() -> None:
    r = rules(GatePolicy(tailgate_window_s=10, refused_clear_s=100))
    r.observe(plate("gate-parking-b1", "湘A12345"), T0)
    assert r.observe(event("gate.loop", "gate-parking-b1"), T0 + 5) == []
    [tail] = r.observe(event("gate.loop", "gate-parking-b1"), T0 + 6)  # a second car
    assert isinstance(tail, AlertSignal) and tail.rule == TAILGATE
    assert r.observe(event("gate.loop", "gate-main-in"), T0 + 6) == []  # reports no loop
    [gone] = r.tick(T0 + 106)
    assert isinstance(gone, AlertSignal) and (gone.rule, gone.active) == (TAILGATE, False)


def test_a_visitor_inside_past_the_pass_overstays() -> None:
    r = rules(GatePolicy(overstay_grace_s=600))
    r.observe(plate("gate-main-in", "湘A00001"), T0)
    assert r.tick(T0 + 3600 + 599) == []
    [over] = r.tick(T0 + 3600 + 600)
    assert isinstance(over, AlertSignal) and over.rule == OVERSTAY
    assert r.tick(T0 + 3600 + 700) == []


def test_a_refusal_nobody_acts_on_expires() -> None:
    r = rules(GatePolicy(refused_clear_s=300))
    r.observe(plate("gate-main-in", "鄂B54321"), T0)
    assert r.tick(T0 + 299) == []
    [gone] = r.tick(T0 + 300)
    assert isinstance(gone, AlertSignal) and (gone.rule, gone.active) == (REFUSED, False)


# ---- the fire linkage, from tables of the fire model's signals -------------------------------

def fire(active: bool = True, drill: bool = False, zone: str = "main-office-a") -> AlertSignal:
    return AlertSignal("fire.confirmed", zone, zone, Severity.CRITICAL, active,
                       "fire confirmed", {"building": "main", "drill": drill})


ALL = sorted(SPEC)


@pytest.mark.parametrize(
    ("signals", "policy", "opened"),
    [
        ([fire()], GatePolicy(), ALL),
        ([fire(drill=True)], GatePolicy(), []),
        ([fire(drill=True)], GatePolicy(open_on_drill=True), ALL),
        ([fire(active=False)], GatePolicy(), []),
        ([fire(), fire()], GatePolicy(), ALL),  # a second confirmation sends nothing new
        ([fire(), fire(active=False)], GatePolicy(), ALL),  # the fire out: still held
        ([fire(), fire(zone="health-office")], GatePolicy(), ALL),
        ([AlertSignal("fire.static", "hd-1", "z", Severity.CRITICAL, True)], GatePolicy(), []),
    ],
)
def test_fire_linkage_from_signals(signals: list[AlertSignal], policy: GatePolicy,
                                   opened: list[str]) -> None:
    r = rules(policy)
    out = [v for s in signals for v in r.follow(s, T0)]
    commands = [v for v in out if isinstance(v, Command)]
    assert sorted(c.device for c in commands) == opened
    assert all(c.action == "hold_open" and c.who == "rule:vehicles" for c in commands)
    assert all("fire confirmed in main-office-a (main)" in c.why for c in commands)
    holds = [v for v in out if isinstance(v, AlertSignal) and v.rule == FIRE_HOLD]
    assert [h.active for h in holds] == ([True] if opened else [])
    assert r.holding() == opened


def test_held_barriers_open_for_every_read_and_stay_until_the_desk_releases_them() -> None:
    r = rules()
    r.follow(fire(), T0)
    [cmd] = r.observe(plate("gate-main-in", "鄂B54321"), T0 + 1)  # no refusal in a fire
    assert isinstance(cmd, Command) and cmd.action == "open"
    assert r.tick(T0 + 3600) != []  # unconfirmed: sent again, not released by time
    assert r.holding() == ALL
    out = r.observe(event("gate.release", "barrier-gates", gates=["gate-main-in"],
                          who="zhao via api", why="all clear"), T0 + 4000)
    assert [(c.device, c.action, c.who) for c in out if isinstance(c, Command)] == [
        ("gate-main-in", "release", "zhao via api")]
    assert r.holding() == [g for g in ALL if g != "gate-main-in"]
    out = r.observe(event("gate.release", "barrier-gates", who="zhao", why="all clear"),
                    T0 + 4001)
    assert sorted(c.device for c in out if isinstance(c, Command)) == [
        g for g in ALL if g != "gate-main-in"]
    assert r.holding() == []
    assert [(s.rule, s.active) for s in out if isinstance(s, AlertSignal)] == [
        (FIRE_HOLD, False)]


def test_an_unconfirmed_open_is_retried_then_alerted_and_a_confirmed_one_is_not() -> None:
    r = rules(GatePolicy(linkage_retry_s=5, linkage_attempts=3))
    r.follow(fire(), T0)
    for g in ALL:
        if g != "gate-parking-b1":
            r.observe(event("gate.state", g, state="open", commanded="hold_open",
                            status="verified"), T0 + 1)
    failed = {"state": "closed", "commanded": "hold_open", "status": "failed"}
    r.observe(event("gate.state", "gate-parking-b1", **failed), T0 + 1)
    assert r.tick(T0 + 4.9) == []  # due 5 s after the last send
    [again] = r.tick(T0 + 5)
    assert isinstance(again, Command) and again.device == "gate-parking-b1"
    assert "attempt 2" in again.why
    assert r.tick(T0 + 12) == []  # its result is awaited
    r.observe(event("gate.state", "gate-parking-b1", **failed), T0 + 12)
    [third] = r.tick(T0 + 17)
    assert isinstance(third, Command) and "attempt 3" in third.why
    # No result at all: after the commander's bound it counts as failed.
    [alert] = r.tick(T0 + 17 + RESULT_TIMEOUT_S)
    assert isinstance(alert, AlertSignal)
    assert (alert.rule, alert.source, alert.severity) == (
        LINKAGE_FAILED, "gate-parking-b1", Severity.CRITICAL)
    assert r.tick(T0 + 100) == []
    cleared = r.observe(event("gate.state", "gate-parking-b1", state="open",
                              commanded="hold_open", status="verified"), T0 + 101)
    assert [(s.rule, s.active) for s in cleared if isinstance(s, AlertSignal)] == [
        (JAMMED, False), (LINKAGE_FAILED, False)]


def test_a_fire_hold_firing_before_a_restart_is_sent_again() -> None:
    r = rules()
    r.restore([Alert("a1", f"{FIRE_HOLD}:barrier-gates", FIRE_HOLD, "barrier-gates", "z",
                     Severity.MAJOR, AlertState.FIRING, T0, None, "held", {})])
    out = r.tick(T0 + 1)
    assert sorted(c.device for c in out if isinstance(c, Command)) == ALL
    assert r.holding() == ALL


def test_the_registry_follows_the_fire_model_through_the_rule_registry() -> None:
    class FireModel:
        name = "fire-model"

        def restore(self, firing: Any) -> None:
            return None

        def observe(self, item: Any, now: float) -> list[AlertSignal]:
            return [fire()] if isinstance(item, Event) and item.kind == "test.fire" else []

        def tick(self, now: float) -> list[AlertSignal]:
            return []

    registry = RuleRegistry([FireModel(), rules()])
    out = registry.observe(event("test.fire", "panel"), T0)
    assert sorted(v.device for v in out if isinstance(v, Command)) == ALL


def test_a_heat_detector_fire_confirmed_by_the_real_fire_model_holds_the_barriers() -> None:
    from gateway.events import Reading
    from gateway.rules.fire import DetectorSpec, FireParams, FireRules
    from gateway.rules.fire_model import FireModel, ZoneSpec

    thresholds = {"A1": 56.0, "A2": 60.0, "B": 75.0, "C": 90.0}
    registry = RuleRegistry([
        FireRules(FireParams(static_threshold_c=thresholds),
                  [DetectorSpec("hd-1", "main-office-a", "A1R", 30.0),
                   DetectorSpec("hd-2", "main-drill", "A1R", 30.0)]),
        FireModel([ZoneSpec("main-office-a", "main"),
                   ZoneSpec("main-drill", "main", test_mode=True)]),
        rules(),
    ])
    drill = registry.observe(Reading("hd-2", "temperature", 80.0, "celsius", T0), T0)
    assert "fire.confirmed" in [v.rule for v in drill if isinstance(v, AlertSignal)]
    assert [v for v in drill if isinstance(v, Command)] == []  # a drill opens nothing
    out = registry.observe(Reading("hd-1", "temperature", 80.0, "celsius", T0), T0)
    assert sorted(v.device for v in out if isinstance(v, Command)) == ALL
    assert [v.rule for v in out if isinstance(v, AlertSignal)] == [
        "fire.static", "fire.confirmed", FIRE_HOLD]


@pytest.mark.parametrize(
    ("told", "status", "reported", "later_s", "jammed"),
    [
        ("open", "sent", "closed", 2, True),  # told to open, says it is shut
        ("open", "sent", "open", 2, False),
        ("close", "sent", "open", 2, True),
        ("open", "sent", "closed", RESULT_TIMEOUT_S + 1, False),  # too late to judge
        ("open", "failed", "closed", 2, False),  # never told: nothing to judge
        ("open", "unverified", "closed", 2, False),  # a result, not a "sent": no judging
    ],
)
def test_a_barrier_that_cannot_read_back_is_judged_by_its_next_report(
    told: str, status: str, reported: str, later_s: float, jammed: bool,
) -> None:
    r = rules()
    assert r.observe(event("gate.state", "gate-main-in", state="unknown", commanded=told,
                           status=status), T0) == []
    out = r.observe(event("gate.state", "gate-main-in", state=reported), T0 + later_s)
    assert [s.rule for s in out if isinstance(s, AlertSignal) and s.active] == (
        [JAMMED] if jammed else [])
    # Only the first report after the command is judged.
    again = r.observe(event("gate.state", "gate-main-in", state="closed"), T0 + later_s + 1)
    assert [s for s in again if isinstance(s, AlertSignal) and s.rule == JAMMED] == []


def test_a_fire_hold_stays_confirmed_whatever_the_barrier_reports_next() -> None:
    r = rules()
    r.follow(fire(), T0)
    r.observe(event("gate.state", "gate-main-in", state="unknown", commanded="hold_open",
                    status="unverified"), T0 + 1)
    r.observe(event("gate.state", "gate-main-in", state="open"), T0 + 2)
    assert not [v for v in r.tick(T0 + 60) if isinstance(v, Command)
                and v.device == "gate-main-in"]


def test_a_command_only_sent_keeps_the_fire_hold_waiting_for_its_result() -> None:
    r = rules(GatePolicy(linkage_retry_s=5))
    r.follow(fire(), T0)
    r.observe(event("gate.state", "gate-main-in", state="unknown", commanded="hold_open",
                    status="sent"), T0 + 0.1)
    again = [v for v in r.tick(T0 + 6) if isinstance(v, Command) and v.device == "gate-main-in"]
    assert again == []  # still awaiting the result, not failed


# ---- rebuilt after a restart ----------------------------------------------------------
READS = ["湘A12345", "湘A8B8B8", "湘A66666", "湘A59999", "鄂B54321", "湘AI2345", ""]
STEPS = st.lists(st.tuples(st.sampled_from([g.id for g in GATES]), st.sampled_from(READS),
                           st.booleans(), st.booleans()), max_size=25)


@settings(max_examples=60, deadline=None)
@given(STEPS)
def test_occupancy_and_who_is_inside_rebuild_from_the_stored_reads(
        steps: list[tuple[str, str, bool, bool]]) -> None:
    """A restart replays the stored reads with their stored decisions: the counts and the
    vehicles inside come out as the running module had them."""
    live = rules()
    stored: list[StoredRead] = []
    for n, (gate, text, by_hand, offline) in enumerate(steps):
        now = T0 + n
        said = live.observe(plate(gate, text, n + 1, offline=offline), now)
        opened = any(isinstance(v, Command) for v in said)
        stored.append(StoredRead(now, gate, "gate.plate",
                                 {"plate": text, "offline": offline}, opened))
        if by_hand and not opened and not offline:
            live.observe(event("gate.manual_open", gate, who="wang"), now)
            stored.append(StoredRead(now, gate, "gate.manual_open", {"who": "wang"}))
    rebuilt = rules()
    rebuilt.rebuild(stored)
    assert rebuilt.occupancy() == live.occupancy()
    # Who is inside: every vehicle let in by hand may still leave by the exit gate.
    for text in READS:
        gone = plate("gate-main-out", text, 99)
        assert bool(rebuilt.observe(gone, T0 + 100)) == bool(live.observe(gone, T0 + 100))


@pytest.mark.parametrize(
    ("reads", "passages", "expected"),
    [
        # A stored "no" stays a no, even for a plate the registry would let in now.
        ([("gate-main-in", "湘A12345", False)], 0, {"compound": 0}),
        # A stored open counts, even for a plate the registry no longer holds.
        ([("gate-main-in", "鄂B54321", True)], 1, {"compound": 1}),
        # No stored decision (a gate controller's read): judged against the registry now.
        ([("gate-main-in", "湘A12345", None), ("gate-main-in", "鄂B54321", None)], 1,
         {"compound": 1}),
        ([("gate-main-in", "湘A8B8B8", True), ("gate-main-out", "湘A8B8B8", True)], 2,
         {"compound": 0}),
        # A gate no longer in the site file is passed over.
        ([("gate-suv-lot", "湘A66666", True), ("gate-elsewhere", "湘A66666", True)], 1,
         {"suv-lot-north": 1}),
    ],
)
def test_rebuild_takes_the_stored_decision_where_there_is_one(
        reads: list[tuple[str, str, bool | None]], passages: int,
        expected: dict[str, int]) -> None:
    r = rules()
    counted = r.rebuild(StoredRead(T0 + n, gate, "gate.plate", {"plate": text}, opened)
                        for n, (gate, text, opened) in enumerate(reads))
    assert counted == passages
    assert {k: v for k, v in r.occupancy().items() if k in expected} == expected


def test_a_rebuilt_passage_is_no_alibi_for_a_loop_after_the_restart() -> None:
    r = rules()
    r.rebuild([StoredRead(T0, "gate-parking-b1", "gate.plate", {"plate": "湘A12345"}, True)])
    assert r.occupancy()["main-parking-b1"] == 1
    [signal] = r.observe(event("gate.loop", "gate-parking-b1"), T0 + 1)
    assert isinstance(signal, AlertSignal) and signal.rule == TAILGATE


# What follows a decided open, and the outcome the decisions metric is told.
_SENT = {"state": "unknown", "commanded": "open", "status": "sent"}
_UNVERIFIED = {"state": "unknown", "commanded": "open", "status": "unverified"}


@pytest.mark.parametrize(
    ("read", "after", "outcome"),
    [
        # A control that reads the barrier back (Hikvision's barrierGate).
        ("湘A8B8B8", [("gate.state", {"state": "open", "commanded": "open",
                                      "status": "verified"})], "opened_confirmed"),
        ("湘A8B8B8", [("gate.state", {"state": "closed", "commanded": "open",
                                      "status": "verified"})], "opened_unconfirmed"),
        ("湘A8B8B8", [("gate.state", {"state": "unknown", "commanded": "open",
                                      "status": "failed"})], "opened_unconfirmed"),
        # A gate controller over MQTT: told, published, then its own report.
        ("湘A8B8B8", [("gate.state", _SENT), ("gate.state", _UNVERIFIED),
                      ("gate.state", {"state": "open"})], "opened_confirmed"),
        ("湘A8B8B8", [("gate.state", _SENT), ("gate.state", _UNVERIFIED),
                      ("gate.state", {"state": "closed"})], "opened_unconfirmed"),
        # Opened by the camera's reply: the barrier's report, or a car over its loop.
        ("湘A8B8B8", [("gate.state", {"state": "open", "reported": "barrier"})],
         "opened_confirmed"),
        ("湘A8B8B8", [("gate.loop", {"loop": "passed"})], "opened_confirmed"),
        # Nothing said the barrier moved.
        ("湘A8B8B8", [("tick", {})], "opened_unconfirmed"),
        ("湘A8B8B8", [("gate.state", _SENT), ("gate.state", _UNVERIFIED), ("tick", {})],
         "opened_unconfirmed"),
        ("鄂B54321", [], "refused"),
    ],
    ids=["read-back-open", "read-back-closed", "command-failed", "controller-open",
         "controller-jammed", "barrier-report", "loop", "nothing-said", "controller-silent",
         "refused"],
)
def test_each_decision_is_told_once_with_its_outcome(
    read: str, after: list[tuple[str, dict[str, Any]]], outcome: str,
) -> None:
    told: list[tuple[str, str]] = []
    r = VehicleRules(GATES, GatePolicy(), VEHICLES, Pseudonyms(b"k" * 32),
                     on_decided=lambda gate, o: told.append((gate, o)))
    r.observe(plate("gate-main-in", read), T0)
    now = T0
    for kind, data in after:
        now += 1.0
        if kind == "tick":
            now += RESULT_TIMEOUT_S
            r.tick(now)
        else:
            r.observe(event(kind, "gate-main-in", **data), now)
    # Anything after the outcome (another report, time) tells nothing more.
    r.observe(event("gate.state", "gate-main-in", state="closed"), now + 1)
    r.tick(now + 2 * RESULT_TIMEOUT_S)
    assert told == [("gate-main-in", outcome)]


def test_an_open_superseded_before_its_outcome_is_unconfirmed() -> None:
    told: list[str] = []
    r = VehicleRules(GATES, GatePolicy(), VEHICLES, on_decided=lambda _g, o: told.append(o))
    r.observe(plate("gate-main-in", "湘A8B8B8"), T0)
    r.observe(plate("gate-main-in", "湘A12345", seq=2), T0 + 2)
    r.observe(event("gate.state", "gate-main-in", state="open", reported="barrier"), T0 + 3)
    assert told == ["opened_unconfirmed", "opened_confirmed"]
