"""Lift maintenance: the box's technician-on-site signal is the evidence of a visit; a lift
whose last visit is older than TSG T5002's half-monthly interval (15 days), or the site's
own monthly rule (30 days), is overdue. Pure: no I/O, time passed in; the last visit of
each lift comes from the store when the module is built."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.events import Event, Heartbeat, Reading, Severity

TSG_OVERDUE = "elevator.maintenance_overdue"
SITE_OVERDUE = "elevator.site_inspection_overdue"
_DAY = 86400.0

_NOTHING: list[AlertSignal] = []


@dataclass(frozen=True, slots=True)
class MaintenanceSpec:
    lift: str
    zone: str
    firm: str


@dataclass(frozen=True, slots=True)
class MaintenanceParams:
    half_monthly_days: float = 15.0
    site_monthly_days: float = 30.0
    min_visit_min: float = 10.0


@dataclass(slots=True)
class _Calendar:
    spec: MaintenanceSpec
    last_visit: float | None
    firing: set[str] = field(default_factory=set)


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


class LiftMaintenance:
    """One calendar per lift (and so per firm); signals only on a transition."""

    name = "maintenance"

    def __init__(self, params: MaintenanceParams, lifts: Iterable[MaintenanceSpec],
                 last_visits: Mapping[str, float] | None = None,
                 first_seen: Mapping[str, float] | None = None) -> None:
        self._params = params
        visits = last_visits or {}
        self._lifts = {s.lift: _Calendar(s, visits.get(s.lift)) for s in lifts}
        # Until a lift's first visit is seen, its calendar runs from when the store first
        # heard of it, or else from the gateway's start.
        self._first_seen = dict(first_seen or {})
        self._since: float | None = None

    def restore(self, firing: Iterable[Alert]) -> None:
        for alert in firing:
            cal = self._lifts.get(alert.source)
            if cal is not None and alert.state is AlertState.FIRING and alert.rule in (
                    TSG_OVERDUE, SITE_OVERDUE):
                cal.firing.add(alert.rule)

    def sources(self) -> Collection[str]:
        """Only its own lifts' items can make it speak."""
        return self._lifts.keys()

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[AlertSignal]:
        if not isinstance(item, Event) or item.kind != "elevator.visit.ended":
            return _NOTHING
        cal = self._lifts.get(item.source)
        if cal is None:
            return _NOTHING
        duration = item.data.get("duration_s")
        if isinstance(duration, int | float) and duration < self._params.min_visit_min * 60:
            return _NOTHING  # a key turned by mistake, not a visit
        ended = item.data.get("ended_at", item.time)
        cal.last_visit = float(ended) if isinstance(ended, int | float) else item.time
        out = _NOTHING
        for rule in sorted(cal.firing):
            cal.firing.discard(rule)
            out = _add(out, self._signal(cal, rule, False, "visited on " + _day(cal.last_visit)))
        return out

    def tick(self, now: float) -> Sequence[AlertSignal]:
        if self._since is None:
            self._since = now
        out = _NOTHING
        p = self._params
        for cal in self._lifts.values():
            ref = self._reference(cal, now)
            age_days = (now - ref) / _DAY
            for rule, limit in ((TSG_OVERDUE, p.half_monthly_days),
                                (SITE_OVERDUE, p.site_monthly_days)):
                if age_days > limit and rule not in cal.firing:
                    cal.firing.add(rule)
                    last = _day(cal.last_visit) if cal.last_visit is not None else "none seen"
                    out = _add(out, self._signal(
                        cal, rule, True,
                        f"no visit for {age_days:.0f} days (limit {limit:g}; last: {last})"))
        return out

    @property
    def started(self) -> bool:
        """The calendar runs: the first tick has been seen."""
        return self._since is not None

    def calendar(self, now: float) -> list[dict[str, object]]:
        """Per lift: the last visit and when each rule wants the next one."""
        p = self._params
        out: list[dict[str, object]] = []
        for cal in self._lifts.values():
            ref = self._reference(cal, now)
            out.append({"lift": cal.spec.lift, "firm": cal.spec.firm,
                        "last_visit": cal.last_visit,
                        "tsg_due": ref + p.half_monthly_days * _DAY,
                        "site_due": ref + p.site_monthly_days * _DAY,
                        "overdue": sorted(cal.firing)})
        return out

    def _reference(self, cal: _Calendar, now: float) -> float:
        if cal.last_visit is not None:
            return cal.last_visit
        first = self._first_seen.get(cal.spec.lift)
        if first is not None:
            return first
        return self._since if self._since is not None else now

    def _signal(self, cal: _Calendar, rule: str, active: bool, detail: str) -> AlertSignal:
        spec = cal.spec
        if rule == TSG_OVERDUE:
            severity, what = Severity.MAJOR, "half-monthly maintenance (TSG T5002)"
        else:
            severity, what = Severity.MINOR, "monthly site inspection"
        summary = (f"Lift {spec.lift}: {what} by {spec.firm} "
                   f"{'overdue' if active else 'done'}: {detail}")
        return AlertSignal(rule, spec.lift, spec.zone, severity, active, summary,
                           {"firm": spec.firm, "last_visit": cal.last_visit})


def _add(out: list[AlertSignal], signal: AlertSignal) -> list[AlertSignal]:
    if out is _NOTHING:
        return [signal]
    out.append(signal)
    return out
