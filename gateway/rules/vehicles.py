"""Vehicle rules: who the barriers let in, zone occupancy, the gate alerts, and the fire
linkage. Pure: the registry comes in as a snapshot, time as a number.

- A plate read (`gate.plate`) of a registered vehicle, valid now, allowed at this gate
  and into the zone behind it, opens the barrier (a Command the push driver answers
  with). A fuzzy match (one OCR confusion) opens only for the classes the policy names.
  Anything else raises `gate.refused` with the read and its picture; the desk opens by
  hand (`gate.manual_open`), which clears it.
- Offline replays are history: never a command, never a count.
- Each decision's outcome is told once (`on_decided`, the decisions metric): `refused`,
  or an open `opened_confirmed` once the barrier reads open (its control's read-back, a
  controller's or barrier's own next report, or a vehicle over its loop), else
  `opened_unconfirmed` (it reads closed, the command failed, or nothing said so within
  `RESULT_TIMEOUT_S`).
- `gate.state` after a command that did not move the barrier raises `gate.jammed`; a
  barrier open longer than T raises `gate.held_open`; a loop passage with no open just
  before it raises `gate.tailgate`; a visitor inside past the pass, `gate.overstay`.
- Fire: an active `fire.confirmed` (not a drill, unless the policy says so) sends
  `hold_open` to every barrier and holds them until the desk releases them
  (`gate.release`). An open not confirmed by the barrier is sent again every
  `linkage_retry_s`, up to `linkage_attempts`; then `gate.linkage_failed` (critical).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.commands import Command
from gateway.events import Event, Heartbeat, Reading, Severity
from gateway.rules import Verdict
from gateway.vehicles.plates import MatchKind, PlateMatch, match
from gateway.vehicles.privacy import Pseudonyms
from gateway.vehicles.registry import Vehicle, VehicleClass

REFUSED = "gate.refused"
JAMMED = "gate.jammed"
HELD_OPEN = "gate.held_open"
TAILGATE = "gate.tailgate"
OVERSTAY = "gate.overstay"
FIRE_HOLD = "gate.fire_hold"
LINKAGE_FAILED = "gate.linkage_failed"
FIRE_CONFIRMED = "fire.confirmed"
ALL_GATES = "barrier-gates"  # the source of the site-wide fire hold
COMPOUND = "compound"  # the area behind a gate that leads into the compound itself
WHO = "rule:vehicles"
# What the barrier should read after each command.
EXPECTED = {"open": "open", "hold_open": "open", "close": "closed", "release": "closed"}
# A command's result (a `gate.state` event) comes within the commander's 10 s bound.
RESULT_TIMEOUT_S = 15.0
# A decision's outcome, as the decisions metric counts it.
OPENED_CONFIRMED = "opened_confirmed"
OPENED_UNCONFIRMED = "opened_unconfirmed"
REFUSED_OUTCOME = "refused"
OUTCOMES = (OPENED_CONFIRMED, OPENED_UNCONFIRMED, REFUSED_OUTCOME)
# Vehicles remembered inside (for exits and overstay); a bound, not a census.
MAX_INSIDE = 20_000

_NOTHING: list[Verdict] = []


@dataclass(frozen=True, slots=True)
class GateRuleSpec:
    id: str
    zone: str
    direction: str = "in"  # "in" / "out"
    area: str | None = None  # the zone behind the gate; None: the compound
    reports_loop: bool = False

    @property
    def counts(self) -> str:
        return self.area or COMPOUND


@dataclass(frozen=True, slots=True)
class GatePolicy:
    fuzzy_open: frozenset[VehicleClass] = frozenset({VehicleClass.OFFICIAL,
                                                     VehicleClass.STAFF})
    held_open_s: float = 120.0
    tailgate_window_s: float = 15.0
    refused_clear_s: float = 300.0
    overstay_grace_s: float | None = None
    linkage_retry_s: float = 5.0
    linkage_attempts: int = 5
    open_on_drill: bool = False


@dataclass(frozen=True, slots=True)
class StoredRead:
    """A stored gate event (`gate.plate` or `gate.manual_open`), to rebuild who is inside
    after a restart. `opened` is the decision stored with the read (a `decision.open`
    audit row); None where no decision was awaited (a gate controller's read), which is
    judged again against the registry as it is now, at the read's own time."""

    time: float
    gate: str
    kind: str
    data: Mapping[str, object]
    opened: bool | None = None


@dataclass(slots=True)
class _Hold:
    last_sent: float
    attempts: int
    confirmed: bool = False
    awaiting: bool = True  # a hold_open is out and its result not yet seen


@dataclass(slots=True)
class _Gate:
    spec: GateRuleSpec
    last_open: float | None = None  # the last open (for tailgating)
    open_since: float | None = None
    refused_plate: str = ""  # the read the desk may open for by hand
    # A command the barrier could not read back (told, unverified): its next reported
    # state is judged against it.
    unread: tuple[str, float] | None = None
    # An open decided at this time whose outcome (confirmed or not) is not yet told.
    deciding: float | None = None


@dataclass(frozen=True, slots=True)
class Judgement:
    allow: bool
    why: str
    vehicle: Vehicle | None = None
    match: PlateMatch | None = None


@dataclass(slots=True)
class _Active:
    raised_at: float
    zone: str
    data: dict[str, object] = field(default_factory=dict)


class VehicleRules:
    name = "vehicles"

    def __init__(self, gates: Iterable[GateRuleSpec], policy: GatePolicy,
                 vehicles: Iterable[Vehicle], names: Pseudonyms | None = None, *,
                 on_decided: Callable[[str, str], None] | None = None) -> None:
        self._gates = {g.id: _Gate(g) for g in gates}
        self._on_decided = on_decided  # (gate, outcome): a metric, not state
        self.policy = policy
        self._names = names or Pseudonyms()
        self._vehicles: dict[str, Vehicle] = {}
        self.replace_vehicles(vehicles)
        self._active: dict[tuple[str, str], _Active] = {}
        self._holds: dict[str, _Hold] = {}
        self._inside: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._occupancy: Counter[str] = Counter()

    # ---- state from outside -------------------------------------------------------------
    def replace_vehicles(self, vehicles: Iterable[Vehicle]) -> None:
        """A new registry snapshot (an import, a visitor pass)."""
        self._vehicles = {v.plate: v for v in vehicles}

    def occupancy(self) -> dict[str, int]:
        areas = {g.spec.counts for g in self._gates.values()}
        return {a: self._occupancy.get(a, 0) for a in sorted(areas)}

    def holding(self) -> list[str]:
        """The barriers held open by the fire linkage."""
        return sorted(self._holds)

    def restore(self, firing: Iterable[Alert]) -> None:
        for alert in firing:
            if alert.state is not AlertState.FIRING or not alert.rule.startswith("gate."):
                continue
            self._active[(alert.rule, alert.source)] = _Active(alert.raised_at, alert.zone,
                                                               dict(alert.data))
            if alert.rule == FIRE_HOLD:
                # Held before the restart: sent again on the first tick, until released.
                for g in self._gates:
                    self._holds[g] = _Hold(last_sent=float("-inf"), attempts=0, awaiting=False)

    def rebuild(self, history: Iterable[StoredRead]) -> int:
        """Occupancy and the vehicles inside from the stored entries and exits, oldest
        first (at start, before any live item). Raises nothing and commands nothing;
        returns the number of passages counted."""
        passages = 0
        for read in history:
            gate = self._gates.get(read.gate)
            if gate is None:
                continue
            data = read.data
            if read.kind == "gate.manual_open":
                self._passage(gate, str(data.get("plate") or gate.refused_plate), read.time)
                passages += 1
                continue
            if read.kind != "gate.plate" or data.get("offline"):
                continue
            plate = str(data.get("plate", ""))
            low = bool(data.get("province_low_confidence"))
            opened = read.opened
            if opened is None:
                opened = self.judge(gate.spec, plate, read.time,
                                    province_low_confidence=low).allow
            if not opened:
                gate.refused_plate = plate
                continue
            m = match(plate, self._vehicles, province_low_confidence=low) if plate else None
            who = m.plate if m is not None and m.plate is not None else plate
            self._passage(gate, who, read.time)
            passages += 1
        for gate in self._gates.values():
            gate.last_open = None  # a passage before the restart is no alibi after it
        return passages

    # ---- items --------------------------------------------------------------------------
    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        if type(item) is not Event:
            return _NOTHING
        event: Event = item
        if not event.kind.startswith("gate."):
            return _NOTHING
        if event.kind == "gate.release":
            return self._release(event, now)
        gate = self._gates.get(event.source)
        if gate is None:
            return _NOTHING
        if event.kind == "gate.plate":
            return self._plate(gate, event, now)
        if event.kind == "gate.state":
            return self._state(gate, event, now)
        if event.kind == "gate.loop":
            return self._loop(gate, now)
        if event.kind == "gate.manual_open":
            return self._manual_open(gate, event, now)
        return _NOTHING

    def judge(self, gate: GateRuleSpec, plate: str, now: float, *,
              province_low_confidence: bool = False) -> Judgement:
        """Whether `plate` (normalised) may pass `gate` now, and why (pure)."""
        if not plate:
            return Judgement(False, "no plate read")
        m = match(plate, self._vehicles, province_low_confidence=province_low_confidence)
        if m.kind is MatchKind.AMBIGUOUS:
            return Judgement(False, f"the read is one OCR confusion from {len(m.candidates)}"
                                    " registered plates", match=m)
        if m.plate is None:
            if gate.direction == "out" and (plate, gate.counts) in self._inside:
                return Judgement(True, "leaving after a manual entry", match=m)
            return Judgement(False, "not registered", match=m)
        v = self._vehicles[m.plate]
        # Reasons go to logs and the audit: a pseudonym, never the plate.
        shown = self._names.ref(v.plate)
        fuzzy = "" if m.kind is MatchKind.EXACT else (
            f" (fuzzy: read {self._names.ref(m.read)}, character {m.position} forgiven)")
        if m.kind is MatchKind.FUZZY and v.vclass not in self.policy.fuzzy_open:
            allowed = ", ".join(sorted(c.value for c in self.policy.fuzzy_open)) or "no class"
            return Judgement(False, f"fuzzy match to {v.vclass.value} {shown}: fuzzy matches"
                                    f" open only for {allowed}", v, m)
        if gate.direction == "out":
            return Judgement(True, f"{v.vclass.value} {shown} leaving{fuzzy}", v, m)
        if v.vclass is VehicleClass.BARRED:
            return Judgement(False, f"{shown} is barred", v, m)
        if not v.valid_at(now):
            return Judgement(False, f"the registration of {shown} is not valid now", v, m)
        if not v.may_use(gate.id):
            return Judgement(False, f"{v.vclass.value} {shown} is not allowed at {gate.id}", v, m)
        if gate.area is not None and not v.may_park(gate.area):
            return Judgement(False, f"{v.vclass.value} {shown} does not park in {gate.area}",
                             v, m)
        return Judgement(True, f"{v.vclass.value} {shown} registered{fuzzy}", v, m)

    def _plate(self, gate: _Gate, event: Event, now: float) -> list[Verdict]:
        data = event.data
        if data.get("offline"):
            return _NOTHING  # history: the camera's own list decided then
        plate = str(data.get("plate", ""))
        if self._holds:
            self._passage(gate, plate, now)
            self._open_decided(gate, now)
            return [Command(gate.spec.id, "open", who=WHO, why="barriers held open: fire")]
        verdict = self.judge(gate.spec, plate, now,
                             province_low_confidence=bool(data.get("province_low_confidence")))
        out: list[Verdict] = []
        key = (REFUSED, gate.spec.id)
        if verdict.allow:
            who = verdict.vehicle.plate if verdict.vehicle is not None else plate
            self._passage(gate, who, now)
            self._open_decided(gate, now)
            out.append(Command(gate.spec.id, "open", who=WHO, why=verdict.why))
            if key in self._active:
                out.append(self._clear(key, now, "a registered vehicle passed since"))
            return out
        if key in self._active:
            out.append(self._clear(key, now, "another vehicle refused since"))
        gate.refused_plate = plate
        self._told(gate, REFUSED_OUTCOME)
        ref = self._names.ref(plate) if plate else "no plate"
        out.append(self._raise(
            REFUSED, gate.spec.id, gate.spec.zone, Severity.MAJOR, now,
            f"{gate.spec.id}: {ref} not let in: {verdict.why}",
            {"plate": self._names.shown(plate), "plate_ref": self._names.ref(plate),
             "reason": verdict.why,
             "event": event.id, "pictures": list(data.get("pictures", [])),
             "match": verdict.match.kind.value if verdict.match else "none",
             "vehicle_class": verdict.vehicle.vclass.value if verdict.vehicle else None},
        ))
        return out

    def _told(self, gate: _Gate, outcome: str) -> None:
        if outcome != REFUSED_OUTCOME:
            gate.deciding = None
        if self._on_decided is not None:
            self._on_decided(gate.spec.id, outcome)

    def _open_decided(self, gate: _Gate, now: float) -> None:
        if gate.deciding is not None:  # the open before it never said how it went
            self._told(gate, OPENED_UNCONFIRMED)
        gate.deciding = now

    def _judge_open(self, gate: _Gate, commanded: object, state: str, status: object) -> None:
        """A decided open's outcome from the barrier's state: the result of its command,
        or (the reply opened it, or it was told unverified) the barrier's own report."""
        if commanded in ("open", "hold_open") or commanded is None:
            if state == "open":
                self._told(gate, OPENED_CONFIRMED)
            elif state == "closed" or (commanded is not None and status == "failed"):
                self._told(gate, OPENED_UNCONFIRMED)

    def _manual_open(self, gate: _Gate, event: Event, now: float) -> list[Verdict]:
        plate = str(event.data.get("plate") or gate.refused_plate)
        self._passage(gate, plate, now)
        key = (REFUSED, gate.spec.id)
        if key in self._active:
            who = str(event.data.get("who", "the desk"))
            return [self._clear(key, now, f"opened by hand by {who}")]
        return _NOTHING

    def _passage(self, gate: _Gate, plate: str, now: float) -> None:
        gate.last_open = now
        area = gate.spec.counts
        key = (plate, area)
        if gate.spec.direction == "in":
            if plate and key not in self._inside:
                self._inside[key] = now
                while len(self._inside) > MAX_INSIDE:
                    self._inside.popitem(last=False)
            self._occupancy[area] += 1
        else:
            self._inside.pop(key, None)
            self._occupancy[area] = max(0, self._occupancy[area] - 1)

    def _state(self, gate: _Gate, event: Event, now: float) -> list[Verdict]:
        data = event.data
        state = str(data.get("state", "unknown"))
        commanded = data.get("commanded")
        out: list[Verdict] = []
        if isinstance(commanded, str) and state == "unknown":
            # "sent": told, and the barrier's next report is about this command; a command
            # that failed is nothing to judge.
            if data.get("status") == "sent":
                gate.unread = (commanded, now)
            elif data.get("status") == "failed":
                gate.unread = None
        elif commanded is None and gate.unread is not None and state in ("open", "closed"):
            # The barrier's own first report after a command it could not read back.
            told, at = gate.unread
            gate.unread = None
            if now - at <= RESULT_TIMEOUT_S:
                commanded = told
        if gate.deciding is not None:
            self._judge_open(gate, commanded, state, data.get("status"))
        if state == "open" and gate.open_since is None:
            gate.open_since = now
        elif state == "closed":
            gate.open_since = None
            held = (HELD_OPEN, gate.spec.id)
            if held in self._active:
                out.append(self._clear(held, now, "closed again"))
        if isinstance(commanded, str) and commanded in EXPECTED:
            expected = EXPECTED[commanded]
            status = data.get("status")
            jam = (JAMMED, gate.spec.id)
            if state in ("open", "closed") and state != expected:
                if jam not in self._active:
                    out.append(self._raise(
                        JAMMED, gate.spec.id, gate.spec.zone, Severity.MAJOR, now,
                        f"{gate.spec.id}: commanded {commanded}, the barrier reads {state}",
                        {"commanded": commanded, "state": state}))
            elif state == expected and jam in self._active:
                out.append(self._clear(jam, now, f"the barrier reads {state}"))
            hold = self._holds.get(gate.spec.id)
            if hold is not None and commanded == "hold_open" and status in (
                    "verified", "unverified", "failed"):
                hold.confirmed = status in ("verified", "unverified") and state != "closed"
                hold.awaiting = False
                failed = (LINKAGE_FAILED, gate.spec.id)
                if hold.confirmed and failed in self._active:
                    out.append(self._clear(failed, now, "the barrier is held open"))
        return out

    def _loop(self, gate: _Gate, now: float) -> list[Verdict]:
        gate.unread = None  # a vehicle went through: the barrier did open
        if gate.deciding is not None:
            self._told(gate, OPENED_CONFIRMED)
        if not gate.spec.reports_loop or self._holds:
            return _NOTHING
        opened = gate.last_open
        gate.last_open = None  # one open, one vehicle
        if opened is not None and now - opened <= self.policy.tailgate_window_s:
            return _NOTHING
        key = (TAILGATE, gate.spec.id)
        out: list[Verdict] = []
        if key in self._active:
            out.append(self._clear(key, now, "another passage without a read since"))
        out.append(self._raise(TAILGATE, gate.spec.id, gate.spec.zone, Severity.MAJOR, now,
                               f"{gate.spec.id}: a vehicle passed without an opened read"
                               f" (tailgating?)", {}))
        return out

    # ---- fire linkage -------------------------------------------------------------------
    def follow(self, signal: AlertSignal, now: float) -> Sequence[Verdict]:
        if signal.rule != FIRE_CONFIRMED or not signal.active:
            return _NOTHING
        if signal.data.get("drill") and not self.policy.open_on_drill:
            return _NOTHING
        building = signal.data.get("building", "")
        why = f"fire confirmed in {signal.zone}" + (f" ({building})" if building else "")
        out: list[Verdict] = []
        for gate_id in self._gates:
            if gate_id not in self._holds:
                self._holds[gate_id] = _Hold(last_sent=now, attempts=1)
                out.append(Command(gate_id, "hold_open", who=WHO, why=why))
        if (FIRE_HOLD, ALL_GATES) not in self._active and out:
            out.append(self._raise(
                FIRE_HOLD, ALL_GATES, signal.zone, Severity.MAJOR, now,
                f"every barrier held open: {why}; the desk releases them",
                {"gates": sorted(self._gates), "fire_zone": signal.zone,
                 "building": building}))
        return out

    def _release(self, event: Event, now: float) -> list[Verdict]:
        asked = event.data.get("gates") or list(self._holds)
        who = str(event.data.get("who", "the desk"))
        why = str(event.data.get("why", "released by the desk"))
        out: list[Verdict] = []
        for gate_id in asked:
            if self._holds.pop(gate_id, None) is not None:
                out.append(Command(gate_id, "release", who=who, why=why))
                failed = (LINKAGE_FAILED, gate_id)
                if failed in self._active:
                    out.append(self._clear(failed, now, f"released by {who}"))
        if not self._holds and (FIRE_HOLD, ALL_GATES) in self._active:
            out.append(self._clear((FIRE_HOLD, ALL_GATES), now, f"released by {who}: {why}"))
        return out

    # ---- time ---------------------------------------------------------------------------
    def tick(self, now: float) -> Sequence[Verdict]:
        out: list[Verdict] = []
        p = self.policy
        for (rule, source), active in list(self._active.items()):
            if rule in (REFUSED, TAILGATE) and now - active.raised_at >= p.refused_clear_s:
                out.append(self._clear((rule, source), now, "nobody acted; expired"))
        for gate in self._gates.values():
            if gate.deciding is not None and now - gate.deciding > RESULT_TIMEOUT_S:
                self._told(gate, OPENED_UNCONFIRMED)  # nothing said the barrier moved
            key = (HELD_OPEN, gate.spec.id)
            if (gate.open_since is not None and gate.spec.id not in self._holds
                    and now - gate.open_since >= p.held_open_s and key not in self._active):
                out.append(self._raise(
                    HELD_OPEN, gate.spec.id, gate.spec.zone, Severity.MINOR, now,
                    f"{gate.spec.id}: open for {now - gate.open_since:.0f} s (held or blocked)",
                    {"open_s": round(now - gate.open_since)}))
        if p.overstay_grace_s is not None:
            out += self._overstays(now, p.overstay_grace_s)
        for gate_id, hold in self._holds.items():
            # Again once the last try failed, or when its result never came back.
            wait = RESULT_TIMEOUT_S if hold.awaiting else p.linkage_retry_s
            if hold.confirmed or now - hold.last_sent < wait:
                continue
            if hold.attempts < p.linkage_attempts:
                hold.attempts += 1
                hold.last_sent = now
                hold.awaiting = True
                out.append(Command(gate_id, "hold_open", who=WHO,
                                   why=f"fire: barrier not confirmed open, attempt"
                                       f" {hold.attempts}"))
            elif (LINKAGE_FAILED, gate_id) not in self._active:
                spec = self._gates[gate_id].spec
                out.append(self._raise(
                    LINKAGE_FAILED, gate_id, spec.zone, Severity.CRITICAL, now,
                    f"{gate_id}: not confirmed open after {hold.attempts} attempts in a fire:"
                    " open it by hand", {"attempts": hold.attempts}))
        return out or _NOTHING

    def _overstays(self, now: float, grace: float) -> list[Verdict]:
        out: list[Verdict] = []
        for plate, area in list(self._inside):
            v = self._vehicles.get(plate)
            if v is None or v.vclass is not VehicleClass.VISITOR or v.valid_until is None:
                continue
            source = f"vehicle-{self._names.ref(plate)[2:10]}"
            if now - v.valid_until >= grace and (OVERSTAY, source) not in self._active:
                zone = next((g.spec.zone for g in self._gates.values()
                             if g.spec.counts == area), "")
                out.append(self._raise(
                    OVERSTAY, source, zone, Severity.MINOR, now,
                    f"visitor {self._names.ref(plate)} still in {area},"
                    f" {(now - v.valid_until) / 60:.0f} min after the pass ended",
                    {"plate": self._names.shown(plate), "area": area}))
        return out

    def _raise(self, rule: str, source: str, zone: str, severity: Severity, now: float,
               summary: str, data: dict[str, object]) -> AlertSignal:
        self._active[(rule, source)] = _Active(now, zone, data)
        return AlertSignal(rule, source, zone, severity, True, summary, data)

    def _clear(self, key: tuple[str, str], now: float, why: str) -> AlertSignal:
        active = self._active.pop(key)
        rule, source = key
        severity = Severity.CRITICAL if rule == LINKAGE_FAILED else Severity.MAJOR
        return AlertSignal(rule, source, active.zone, severity, False, why, active.data)
