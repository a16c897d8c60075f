"""Elevator rules: the lifts' status changes, speed and counters -> alert signals
(entrapment first), availability, and fire return. Pure: no I/O, time passed in.

- entrapment (critical): stopped, outside the door zone, doors closed, occupied, held for
  T seconds; cleared only when the doors open at a landing, whatever happens before;
- stopped outside a landing while empty (major, a fault, not an entrapment);
- the door opening while moving, or the car moving off with its door open (critical);
- a door that will not close: open at a landing in normal service for longer than a
  passenger holds it (major);
- overspeed (critical), power loss (major), a fault code (major), out of service (minor),
  inspection mode (info);
- fire return: while `fire.confirmed` holds in a building, each lift there must reach its
  designated floor with doors open within its timeout, or a critical alert names it.

The gateway never writes to a lift: nothing here returns a command.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.events import Event, Heartbeat, Reading, Severity

ENTRAPMENT = "elevator.entrapment"
STOPPED_OUTSIDE = "elevator.stopped_outside_landing"
DOOR_OPENED_MOVING = "elevator.door_opened_while_moving"
MOVED_DOOR_OPEN = "elevator.moved_with_door_open"
OVERSPEED = "elevator.overspeed"
DOOR_STUCK = "elevator.door_stuck_open"
POWER_LOSS = "elevator.power_loss"
FAULT = "elevator.fault"
OUT_OF_SERVICE = "elevator.out_of_service"
INSPECTION = "elevator.inspection"
FIRE_RETURN_FAILED = "elevator.fire_return_failed"
CONFIRMED = "fire.confirmed"
STALE = "device.stale"  # presence: the box has gone silent

_FLAG_RULES = (ENTRAPMENT, STOPPED_OUTSIDE, DOOR_OPENED_MOVING, MOVED_DOOR_OPEN, DOOR_STUCK,
               OVERSPEED,
               POWER_LOSS, FAULT, OUT_OF_SERVICE, INSPECTION, FIRE_RETURN_FAILED)
_COUNTERS = ("trips", "running_hours", "door_cycles")

# A poll taken T after the first one that saw the condition is the one that decides;
# the scheduler's few milliseconds of jitter must not push the alarm to the next poll.
_JITTER_S = 0.05

_NOTHING: list[AlertSignal] = []


@dataclass(frozen=True, slots=True)
class LiftSpec:
    id: str
    zone: str
    building: str
    firm: str
    designated_floor: int = 1
    fire_return_timeout_s: float = 90.0
    rated_speed_mps: float = 1.75
    entrapment_s: float | None = None  # None: the rules' default


@dataclass(frozen=True, slots=True)
class ElevatorParams:
    entrapment_s: float = 30.0
    stopped_outside_s: float = 60.0
    overspeed_factor: float = 1.15
    door_stuck_s: float = 180.0


@dataclass(slots=True)
class _Return:
    deadline: float
    drill: bool
    zone: str  # the zone whose fire started the watch
    homed: bool = False


@dataclass(slots=True)
class _Lift:
    spec: LiftSpec
    entrapment_s: float
    status: dict[str, Any] | None = None
    trapped_since: float | None = None
    empty_stop_since: float | None = None
    door_open_since: float | None = None
    firing: set[str] = field(default_factory=set)
    fault_code: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    fire_return: _Return | None = None
    silent: bool = False


def _floor(status: Mapping[str, Any]) -> str:
    floor = status.get("floor")
    return "an unknown floor" if floor is None else f"floor {floor}"


def _homed(status: Mapping[str, Any], floor: int) -> bool:
    return (not status["moving"] and bool(status["door_open"]) and bool(status["door_zone"])
            and status.get("floor") == floor)


class ElevatorRules:
    """The rules for a set of lifts; each signals only on a transition. Follows
    `fire.confirmed` (from the fire model) to watch fire return."""

    name = "elevator"

    def __init__(self, params: ElevatorParams, lifts: Iterable[LiftSpec]) -> None:
        self._params = params
        self._lifts: dict[str, _Lift] = {}
        for spec in lifts:
            self._lifts[spec.id] = _Lift(spec, spec.entrapment_s or params.entrapment_s)
        self._by_building: dict[str, list[_Lift]] = {}
        for lift in self._lifts.values():
            self._by_building.setdefault(lift.spec.building, []).append(lift)
        # building -> zones with a confirmed fire (and whether each is a drill)
        self._fires: dict[str, dict[str, bool]] = {}

    # ---- the registry's seams -----------------------------------------------------------
    def restore(self, firing: Iterable[Alert]) -> None:
        alerts = [a for a in firing if a.state is AlertState.FIRING]
        for alert in alerts:
            lift = self._lifts.get(alert.source)
            if lift is not None and alert.rule == STALE:
                lift.silent = True
            if lift is not None and alert.rule in _FLAG_RULES:
                lift.firing.add(alert.rule)
                if alert.rule == FAULT:
                    lift.fault_code = int(alert.data.get("fault_code", 0) or 0)
        for alert in sorted(alerts, key=lambda a: a.raised_at):
            if alert.rule == CONFIRMED:
                building = str(alert.data.get("building", ""))
                self._start_fire(building, alert.source, bool(alert.data.get("drill")),
                                 alert.raised_at)

    def sources(self) -> Collection[str]:
        """Only its own lifts' items can make it speak."""
        return self._lifts.keys()

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[AlertSignal]:
        lift = self._lifts.get(item.source)
        if lift is None:
            return _NOTHING
        if isinstance(item, Event):
            if item.kind == "elevator.status":
                # The poll's own time: the held-for-T timers run on the driver's clock.
                return self._status(lift, item.data, item.time)
            return _NOTHING
        if isinstance(item, Reading):
            if item.metric == "speed_mps":
                return self._speed(lift, item.value)
            if item.metric in _COUNTERS:
                lift.counters[item.metric] = item.value
            elif item.metric == "in_service" and (lift.trapped_since is not None
                                                  or lift.empty_stop_since is not None
                                                  or lift.door_open_since is not None):
                # Every poll brings one: the held-for-T timers are judged at the poll's
                # pace, not only at the once-a-second tick.
                return self._timers(lift, item.time, _NOTHING)
        return _NOTHING

    def tick(self, now: float) -> Sequence[AlertSignal]:
        out = _NOTHING
        for lift in self._lifts.values():
            if (lift.trapped_since is not None or lift.empty_stop_since is not None
                    or lift.door_open_since is not None):
                out = self._timers(lift, now, out)
            ret = lift.fire_return
            if (ret is not None and not ret.homed and FIRE_RETURN_FAILED not in lift.firing
                    and now >= ret.deadline):
                out = self._add(out, self._fire_return_failed(lift, ret))
        return out

    def follow(self, signal: AlertSignal, now: float) -> Sequence[AlertSignal]:
        if signal.rule == STALE:
            silent = self._lifts.get(signal.source)
            if silent is not None:
                silent.silent = signal.active  # unknown now: not counted as available
            return _NOTHING
        if signal.rule != CONFIRMED:
            return _NOTHING
        building = str(signal.data.get("building", ""))
        if signal.active:
            self._start_fire(building, signal.source, bool(signal.data.get("drill")), now)
            # A lift already home when the fire is confirmed has nothing left to do.
            for lift in self._by_building.get(building, ()):
                if lift.fire_return is not None and lift.status is not None:
                    lift.fire_return.homed = _homed(lift.status, lift.spec.designated_floor)
            return _NOTHING
        zones = self._fires.get(building)
        if zones is None or signal.source not in zones:
            return _NOTHING
        del zones[signal.source]
        if zones:
            return _NOTHING
        del self._fires[building]
        out = _NOTHING
        for lift in self._by_building.get(building, ()):
            lift.fire_return = None
            if FIRE_RETURN_FAILED in lift.firing:
                out = self._add(out, self._signal(
                    lift, FIRE_RETURN_FAILED, Severity.CRITICAL, False,
                    f"Lift {lift.spec.id}: the fire in building {building} is over", {}))
        return out

    # ---- what the desk and Prometheus read ------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """Per lift: availability, counters, fire return; read at scrape time."""
        out = []
        for lift in self._lifts.values():
            ret = lift.fire_return
            out.append({
                "lift": lift.spec.id, "building": lift.spec.building, "firm": lift.spec.firm,
                "known": lift.status is not None, "available": self._available(lift),
                "status": dict(lift.status) if lift.status is not None else None,
                "counters": dict(lift.counters),
                "alerts": sorted(lift.firing),
                "fire_return": None if ret is None else {
                    "deadline": ret.deadline, "homed": ret.homed, "drill": ret.drill},
            })
        return out

    def states(self) -> list[tuple[str, str, str]]:
        """(lift, building, "available" | "unavailable" | "unknown") for every lift: a box
        not heard yet, or silent now, says nothing of its lift."""
        return [(lift.spec.id, lift.spec.building,
                 "unknown" if lift.status is None or lift.silent
                 else "available" if self._available(lift) else "unavailable")
                for lift in self._lifts.values()]

    # ---- the rules ----------------------------------------------------------------------
    def _available(self, lift: _Lift) -> bool:
        s = lift.status
        if s is None or lift.silent:
            return False
        blocked = lift.firing & {ENTRAPMENT, STOPPED_OUTSIDE, POWER_LOSS, FAULT, OUT_OF_SERVICE,
                                 INSPECTION, OVERSPEED, DOOR_STUCK}
        return s.get("mode") == "normal" and not s.get("power_loss") and not blocked

    def _status(self, lift: _Lift, data: Mapping[str, Any], now: float) -> list[AlertSignal]:
        before = lift.status
        s = dict(data)
        lift.status = s
        out = _NOTHING
        moving, door_open, zone = bool(s["moving"]), bool(s["door_open"]), bool(s["door_zone"])
        occupied, mode = bool(s["occupied"]), str(s.get("mode", "unknown"))
        spec = lift.spec

        # Entrapment: a person is inside, between landings, doors shut. Inspection mode is
        # a technician driving the car, stopping between landings by intent.
        trapped = not moving and not zone and not door_open and occupied and mode != "inspection"
        if ENTRAPMENT in lift.firing:
            if door_open and zone:
                lift.firing.discard(ENTRAPMENT)
                lift.trapped_since = None
                out = self._add(out, self._signal(
                    lift, ENTRAPMENT, Severity.CRITICAL, False,
                    f"Lift {spec.id}: doors open at {_floor(s)}, passengers out",
                    {"floor": s.get("floor")}))
        elif trapped:
            if lift.trapped_since is None:
                lift.trapped_since = now
        else:
            lift.trapped_since = None

        stopped_empty = not moving and not zone and not occupied and mode != "inspection"
        if STOPPED_OUTSIDE in lift.firing:
            if zone or moving:
                lift.firing.discard(STOPPED_OUTSIDE)
                lift.empty_stop_since = None
                out = self._add(out, self._signal(
                    lift, STOPPED_OUTSIDE, Severity.MAJOR, False,
                    f"Lift {spec.id} back at a landing", {"floor": s.get("floor")}))
        elif stopped_empty:
            if lift.empty_stop_since is None:
                lift.empty_stop_since = now
        else:
            lift.empty_stop_since = None

        # Held open at a landing in normal service (fire return holds its doors open).
        held_open = door_open and zone and not moving and mode == "normal"
        if DOOR_STUCK in lift.firing:
            if not door_open:
                lift.firing.discard(DOOR_STUCK)
                lift.door_open_since = None
                out = self._add(out, self._signal(
                    lift, DOOR_STUCK, Severity.MAJOR, False,
                    f"Lift {spec.id}: the door closes again", {}))
            elif not held_open:
                lift.door_open_since = None
        elif held_open:
            if lift.door_open_since is None:
                lift.door_open_since = now
        else:
            lift.door_open_since = None
        out = self._timers(lift, now, out)

        # The door and the car must never move together.
        unsafe = moving and door_open
        firing_door = lift.firing & {DOOR_OPENED_MOVING, MOVED_DOOR_OPEN}
        if unsafe and not firing_door:
            was_running_closed = (before is not None and bool(before["moving"])
                                  and not before["door_open"])
            rule = DOOR_OPENED_MOVING if was_running_closed else MOVED_DOOR_OPEN
            what = ("door opened while the car was running" if was_running_closed
                    else "car moved off with its door open")
            lift.firing.add(rule)
            out = self._add(out, self._signal(
                lift, rule, Severity.CRITICAL, True, f"Lift {spec.id}: {what}",
                {"floor": s.get("floor"), "direction": s.get("direction")}))
        elif not unsafe and firing_door:
            for rule in firing_door:
                lift.firing.discard(rule)
                out = self._add(out, self._signal(
                    lift, rule, Severity.CRITICAL, False,
                    f"Lift {spec.id}: door and car safe again", {}))

        out = self._flag(lift, POWER_LOSS, Severity.MAJOR, bool(s.get("power_loss")),
                         f"Lift {spec.id} lost its power supply", f"Lift {spec.id} power back",
                         out)
        out = self._flag(lift, OUT_OF_SERVICE, Severity.MINOR, mode == "out_of_service",
                         f"Lift {spec.id} is out of service",
                         f"Lift {spec.id} is back in service", out)
        out = self._flag(lift, INSPECTION, Severity.INFO, mode == "inspection",
                         f"Lift {spec.id} is in inspection mode",
                         f"Lift {spec.id} left inspection mode", out)
        out = self._fault(lift, int(s.get("fault_code", 0) or 0), str(s.get("fault", "")), out)

        ret = lift.fire_return
        if ret is not None and not ret.homed and _homed(s, spec.designated_floor):
            ret.homed = True
            if FIRE_RETURN_FAILED in lift.firing:
                lift.firing.discard(FIRE_RETURN_FAILED)
                out = self._add(out, self._signal(
                    lift, FIRE_RETURN_FAILED, Severity.CRITICAL, False,
                    f"Lift {spec.id} reached floor {spec.designated_floor}, doors open (late)",
                    {}))
        return out

    def _timers(self, lift: _Lift, now: float, out: list[AlertSignal]) -> list[AlertSignal]:
        s = lift.status or {}
        if (lift.trapped_since is not None and ENTRAPMENT not in lift.firing
                and now - lift.trapped_since >= lift.entrapment_s - _JITTER_S):
            lift.firing.add(ENTRAPMENT)
            out = self._add(out, self._signal(
                lift, ENTRAPMENT, Severity.CRITICAL, True,
                f"Lift {lift.spec.id}: passenger trapped near {_floor(s)}, stopped"
                f" outside the door zone with doors closed for {now - lift.trapped_since:.0f} s",
                {"floor": s.get("floor"), "since": lift.trapped_since,
                 "fault": s.get("fault", ""), "power_loss": bool(s.get("power_loss"))}))
        if (lift.empty_stop_since is not None and STOPPED_OUTSIDE not in lift.firing
                and now - lift.empty_stop_since >= self._params.stopped_outside_s - _JITTER_S):
            lift.firing.add(STOPPED_OUTSIDE)
            out = self._add(out, self._signal(
                lift, STOPPED_OUTSIDE, Severity.MAJOR, True,
                f"Lift {lift.spec.id} stopped outside a landing near {_floor(s)}"
                " (empty)", {"floor": s.get("floor"), "since": lift.empty_stop_since}))
        if (lift.door_open_since is not None and DOOR_STUCK not in lift.firing
                and now - lift.door_open_since >= self._params.door_stuck_s - _JITTER_S):
            lift.firing.add(DOOR_STUCK)
            out = self._add(out, self._signal(
                lift, DOOR_STUCK, Severity.MAJOR, True,
                f"Lift {lift.spec.id}: door open at {_floor(s)} for"
                f" {now - lift.door_open_since:.0f} s, it will not close",
                {"floor": s.get("floor"), "since": lift.door_open_since}))
        return out

    def _speed(self, lift: _Lift, speed: float) -> list[AlertSignal]:
        rated = lift.spec.rated_speed_mps
        if OVERSPEED in lift.firing:
            if speed <= rated:
                lift.firing.discard(OVERSPEED)
                return [self._signal(lift, OVERSPEED, Severity.CRITICAL, False,
                                     f"Lift {lift.spec.id} back to {speed:.2f} m/s", {})]
        elif speed > rated * self._params.overspeed_factor:
            lift.firing.add(OVERSPEED)
            return [self._signal(
                lift, OVERSPEED, Severity.CRITICAL, True,
                f"Lift {lift.spec.id} at {speed:.2f} m/s, rated {rated:g} m/s",
                {"speed_mps": speed, "rated_mps": rated})]
        return _NOTHING

    def _flag(self, lift: _Lift, rule: str, severity: Severity, on: bool, raised: str,
              cleared: str, out: list[AlertSignal]) -> list[AlertSignal]:
        if on == (rule in lift.firing):
            return out
        (lift.firing.add if on else lift.firing.discard)(rule)
        return self._add(out, self._signal(lift, rule, severity, on, raised if on else cleared,
                                           {}))

    def _fault(self, lift: _Lift, code: int, text: str,
               out: list[AlertSignal]) -> list[AlertSignal]:
        if code == lift.fault_code and (code != 0) == (FAULT in lift.firing):
            return out
        if FAULT in lift.firing:
            lift.firing.discard(FAULT)
            out = self._add(out, self._signal(
                lift, FAULT, Severity.MAJOR, False,
                f"Lift {lift.spec.id} fault {lift.fault_code} cleared",
                {"fault_code": lift.fault_code}))
        lift.fault_code = code
        if code:
            lift.firing.add(FAULT)
            out = self._add(out, self._signal(
                lift, FAULT, Severity.MAJOR, True, f"Lift {lift.spec.id} fault {code}: {text}",
                {"fault_code": code, "fault": text, "firm": lift.spec.firm}))
        return out

    def _start_fire(self, building: str, zone: str, drill: bool, now: float) -> None:
        zones = self._fires.setdefault(building, {})
        first = not zones
        zones[zone] = drill
        if not first:
            return
        for lift in self._by_building.get(building, ()):
            lift.fire_return = _Return(now + lift.spec.fire_return_timeout_s, drill, zone)

    def _fire_return_failed(self, lift: _Lift, ret: _Return) -> AlertSignal:
        lift.firing.add(FIRE_RETURN_FAILED)
        s = lift.status or {}
        where = "state unknown" if not s else (
            f"at {_floor(s)}, mode {s.get('mode')},"
            f" doors {'open' if s.get('door_open') else 'closed'}")
        # In a drill the alert sits in the drill's zone, so it is marked drill and stays
        # inside like everything else the drill causes.
        return self._signal(
            lift, FIRE_RETURN_FAILED, Severity.CRITICAL, True,
            f"Lift {lift.spec.id} did not reach floor {lift.spec.designated_floor} with doors"
            f" open within {lift.spec.fire_return_timeout_s:g} s of the fire alarm ({where})",
            {"designated_floor": lift.spec.designated_floor, "floor": s.get("floor"),
             "mode": s.get("mode"), "drill": ret.drill, "building": lift.spec.building},
            zone=ret.zone if ret.drill else None)

    def _signal(self, lift: _Lift, rule: str, severity: Severity, active: bool, summary: str,
                data: dict[str, Any], zone: str | None = None) -> AlertSignal:
        data = {"building": lift.spec.building, "firm": lift.spec.firm, **data}
        return AlertSignal(rule, lift.spec.id, zone or lift.spec.zone, severity, active,
                           summary, data)

    @staticmethod
    def _add(out: list[AlertSignal], signal: AlertSignal) -> list[AlertSignal]:
        if out is _NOTHING:
            return [signal]
        out.append(signal)
        return out
