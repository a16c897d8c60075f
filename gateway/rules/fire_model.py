"""The fire model: one per zone. Fire panel point states become alerts (fire critical;
fault, isolation, supervisory and power faults major; test info), and every fire in a
zone, from a panel point or from the MQTT heat detectors' own rules (followed as alert
signals), feeds that zone's model. A fire is confirmed by two independent triggers where
the zone demands it (two detectors, or a detector and a manual call point: GB 50116
§4.1.6), else by one:

    AlertSignal(rule="fire.confirmed", source=<zone>, zone=<zone>, severity=CRITICAL,
                active=True, data={"building": ..., "drill": bool, "triggers": [...]})

and `active=False` once no trigger in the zone is in fire any more. Zones in test mode
record everything, marked drill. Pure: no I/O, time passed in; rebuilt from the firing
alerts on restart.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.events import Event, Heartbeat, Reading, Severity

CONFIRMED = "fire.confirmed"
# The heat detectors' rules whose signal means "this detector sees a fire".
DETECTOR_FIRE_RULES = frozenset({"fire.alarm", "fire.static", "fire.ror"})

# Point bit -> (alert rule, severity). Started, feedback and delay are linkage states the
# panel reports about its own outputs: recorded as events, not alerts.
POINT_RULES: dict[str, tuple[str, Severity]] = {
    "fire": ("fire.point.fire", Severity.CRITICAL),
    "fault": ("fire.point.fault", Severity.MAJOR),
    "isolated": ("fire.point.isolated", Severity.MAJOR),
    "supervisory": ("fire.point.supervisory", Severity.MAJOR),
    "power_fault": ("fire.point.power_fault", Severity.MAJOR),
    "test": ("fire.point.test", Severity.INFO),
}
PANEL_RULES: dict[str, tuple[str, Severity]] = {
    "main_power_fault": ("fire.panel.main_power", Severity.MAJOR),
    "backup_power_fault": ("fire.panel.backup_power", Severity.MAJOR),
    "bus_fault": ("fire.panel.bus_fault", Severity.MAJOR),
    # A panel in manual starts no linkage by itself: a standing risk, not an emergency.
    "manual": ("fire.panel.manual", Severity.MINOR),
}
_RULE_BIT = {rule: bit for bit, (rule, _) in (POINT_RULES | PANEL_RULES).items()}
ISOLATED = POINT_RULES["isolated"][0]

_NOTHING: list[AlertSignal] = []
TriggerKind = Literal["detector", "manual_call_point", "module"]


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    id: str
    building: str
    triggers_needed: int = 1  # 1, or 2 for a double knock
    test_mode: bool = False


@dataclass(frozen=True, slots=True)
class PointSpec:
    id: str
    zone: str
    panel: str
    point: int
    kind: TriggerKind = "detector"
    name: str = ""


@dataclass(frozen=True, slots=True)
class PanelSpec:
    id: str
    zone: str


@dataclass(slots=True)
class _Zone:
    spec: ZoneSpec
    # trigger source -> its kind, while it is in fire
    triggers: dict[str, str] = field(default_factory=dict)
    confirmed: bool = False


class FireModel:
    """Zones, panel points and panels; follows the heat detectors' fire signals."""

    name = "fire_model"

    def __init__(self, zones: Iterable[ZoneSpec], points: Iterable[PointSpec] = (),
                 panels: Iterable[PanelSpec] = ()) -> None:
        self._zones = {z.id: _Zone(z) for z in zones}
        self._points = {p.id: p for p in points}
        self._panels = {p.id: p for p in panels}
        self._bits: dict[str, frozenset[str]] = {}  # point or panel -> bits alerting now
        # detector -> its fire rules firing now (static and rate of rise count once)
        self._detectors: dict[str, set[str]] = {}
        self._detector_zone: dict[str, str] = {}

    # ---- the registry's seams -----------------------------------------------------------
    def restore(self, firing: Iterable[Alert]) -> None:
        for alert in firing:
            if alert.state is not AlertState.FIRING:
                continue
            bit = _RULE_BIT.get(alert.rule)
            if bit is not None and (alert.source in self._points
                                    or alert.source in self._panels):
                self._bits[alert.source] = self._bits.get(alert.source, frozenset()) | {bit}
                point = self._points.get(alert.source)
                if bit == "fire" and point is not None and point.zone in self._zones:
                    self._zones[point.zone].triggers[point.id] = point.kind
            elif alert.rule in DETECTOR_FIRE_RULES and alert.zone in self._zones:
                self._detectors.setdefault(alert.source, set()).add(alert.rule)
                self._detector_zone[alert.source] = alert.zone
                self._zones[alert.zone].triggers[alert.source] = "detector"
            elif alert.rule == CONFIRMED and alert.source in self._zones:
                self._zones[alert.source].confirmed = True

    def sources(self) -> Collection[str]:
        """It observes only the panel's points and the panels (detectors' alarms reach it
        as signals, through `follow`)."""
        return self._points.keys() | self._panels.keys()

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[AlertSignal]:
        if not isinstance(item, Event):
            return _NOTHING
        if item.kind == "fire.point.status":
            point = self._points.get(item.source)
            if point is not None:
                return self._point(point, item.data)
        elif item.kind == "fire.panel.status":
            panel = self._panels.get(item.source)
            if panel is not None:
                return self._panel(panel, item.data)
        return _NOTHING

    def tick(self, now: float) -> Sequence[AlertSignal]:
        return _NOTHING

    def follow(self, signal: AlertSignal, now: float) -> Sequence[AlertSignal]:
        if signal.rule not in DETECTOR_FIRE_RULES:
            return _NOTHING
        zone = self._zones.get(signal.zone)
        if zone is None:
            return _NOTHING
        rules = self._detectors.setdefault(signal.source, set())
        if signal.active:
            rules.add(signal.rule)
            self._detector_zone[signal.source] = zone.spec.id
            zone.triggers[signal.source] = "detector"
        else:
            rules.discard(signal.rule)
            if not rules:
                zone.triggers.pop(signal.source, None)
        return self._judge(zone, _NOTHING)

    # ---- what the desk reads ------------------------------------------------------------
    def zone_state(self) -> list[dict[str, Any]]:
        return [{"zone": z.spec.id, "building": z.spec.building, "confirmed": z.confirmed,
                 "triggers": sorted(z.triggers), "triggers_needed": z.spec.triggers_needed,
                 "drill": z.spec.test_mode} for z in self._zones.values()]

    def isolated_by_zone(self) -> dict[str, int]:
        counts = {z: 0 for z in self._zones}
        for source, bits in self._bits.items():
            point = self._points.get(source)
            if point is not None and "isolated" in bits and point.zone in counts:
                counts[point.zone] += 1
        return counts

    # ---- the model ----------------------------------------------------------------------
    def _point(self, point: PointSpec, data: Mapping[str, Any]) -> list[AlertSignal]:
        bits = frozenset(str(b) for b in data.get("bits", ()) if b in POINT_RULES)
        before = self._bits.get(point.id, frozenset())
        if bits == before:
            return _NOTHING
        self._bits[point.id] = bits
        out = _NOTHING
        label = point.name or point.id
        what = {"fire": "fire alarm", "fault": "fault", "isolated": "isolated",
                "supervisory": "supervisory signal", "power_fault": "power fault",
                "test": "in test"}
        for bit in sorted(before ^ bits):
            rule, severity = POINT_RULES[bit]
            on = bit in bits
            summary = (f"Fire panel {point.panel} point {point.point} ({label}):"
                       f" {what[bit]}{'' if on else ' cleared'}")
            out = _add(out, AlertSignal(rule, point.id, point.zone, severity, on, summary, {
                "panel": point.panel, "point": point.point, "kind": point.kind,
                "name": label}))
        zone = self._zones.get(point.zone)
        if zone is not None and ("fire" in before) != ("fire" in bits):
            if "fire" in bits:
                zone.triggers[point.id] = point.kind
            else:
                zone.triggers.pop(point.id, None)
            out = self._judge(zone, out)
        return out

    def _panel(self, panel: PanelSpec, data: Mapping[str, Any]) -> list[AlertSignal]:
        bits = frozenset(str(b) for b in data.get("bits", ()) if b in PANEL_RULES)
        before = self._bits.get(panel.id, frozenset())
        if bits == before:
            return _NOTHING
        self._bits[panel.id] = bits
        out = _NOTHING
        for bit in sorted(before ^ bits):
            rule, severity = PANEL_RULES[bit]
            on = bit in bits
            what = bit.replace("_", " ")
            summary = f"Fire panel {panel.id}: {what}{'' if on else ' cleared'}"
            out = _add(out, AlertSignal(rule, panel.id, panel.zone, severity, on, summary, {}))
        return out

    def _judge(self, zone: _Zone, out: list[AlertSignal]) -> list[AlertSignal]:
        triggers = zone.triggers
        if zone.spec.triggers_needed >= 2:
            # Two independent triggers, at least one of them a detector: two manual call
            # points may be one person walking past both.
            holds = len(triggers) >= 2 and any(k != "manual_call_point"
                                               for k in triggers.values())
        else:
            holds = bool(triggers)
        if zone.confirmed:
            if triggers:
                return out  # a confirmed fire lasts while anything in the zone is in fire
            zone.confirmed = False
            return _add(out, self._confirmed(zone, False))
        if holds:
            zone.confirmed = True
            return _add(out, self._confirmed(zone, True))
        return out

    def _confirmed(self, zone: _Zone, active: bool) -> AlertSignal:
        spec = zone.spec
        triggers = sorted(zone.triggers)
        if active:
            summary = (f"Fire confirmed in zone {spec.id} by {', '.join(triggers)}"
                       + (" (drill)" if spec.test_mode else ""))
        else:
            summary = f"No fire left in zone {spec.id}"
        return AlertSignal(CONFIRMED, spec.id, spec.id, Severity.CRITICAL, active, summary,
                           {"building": spec.building, "drill": spec.test_mode,
                            "triggers": triggers})


def isolations(firing: Iterable[Alert], zone_names: Mapping[str, str]) -> dict[str, Any]:
    """The standing risk: every isolated panel point, since when, by zone."""
    firing = list(firing)
    by_zone: dict[str, list[dict[str, Any]]] = {}
    for alert in firing:
        if alert.rule == ISOLATED and alert.state is AlertState.FIRING:
            by_zone.setdefault(alert.zone, []).append({
                "point": alert.source, "name": alert.data.get("name", alert.source),
                "kind": alert.data.get("kind"), "panel": alert.data.get("panel"),
                "number": alert.data.get("point"), "since": alert.raised_at,
                "drill": alert.drill})
    return {"zones": [{"zone": zone, "zone_name": zone_names.get(zone, zone),
                       "isolated": sorted(points, key=lambda p: p["since"])}
                      for zone, points in sorted(by_zone.items())],
            "total": sum(len(p) for p in by_zone.values()),
            "panel_faults": panel_faults(firing, zone_names)}


# The panel's own standing faults, and a point that lost its power: the system still looks
# armed while part of it cannot raise an alarm.
PANEL_RISKS = frozenset({rule for rule, _ in PANEL_RULES.values()}
                        | {POINT_RULES["power_fault"][0]})


def panel_faults(firing: Iterable[Alert], zone_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every firing panel power, bus or manual fault and point power fault, oldest first."""
    faults = [{"rule": a.rule, "source": a.source, "zone": a.zone,
               "zone_name": zone_names.get(a.zone, a.zone), "since": a.raised_at,
               "summary": a.summary, "drill": a.drill}
              for a in firing if a.rule in PANEL_RISKS and a.state is AlertState.FIRING]
    return sorted(faults, key=lambda f: (f["since"], f["rule"], f["source"]))


def _add(out: list[AlertSignal], signal: AlertSignal) -> list[AlertSignal]:
    if out is _NOTHING:
        return [signal]
    out.append(signal)
    return out
