"""Elevators and the fire panel in the daemon: their rule modules built from the site file
(and, for the maintenance calendar, from the store), and the monthly report per firm."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.modbus.config import ModbusDevice
from gateway.config import Site
from gateway.errors import ConfigError
from gateway.lift_report import LiftOfFirm, first_seen, last_visits, monthly_report, read_only
from gateway.rules import RuleModule
from gateway.rules.elevator import ElevatorParams, ElevatorRules, LiftSpec
from gateway.rules.fire_model import FireModel, PanelSpec, PointSpec, ZoneSpec
from gateway.rules.maintenance import LiftMaintenance, MaintenanceParams, MaintenanceSpec
from gateway.rules.presence import PresenceSpec

# A box is expected at least this often, whatever its poll: a busy line must not make it
# flap between silent and heard.
_MIN_EXPECTED_S = 2.0


@dataclass(frozen=True, slots=True)
class LiftModules:
    fire_model: FireModel
    elevator: ElevatorRules
    maintenance: LiftMaintenance

    @property
    def modules(self) -> list[RuleModule]:
        return [self.fire_model, self.elevator, self.maintenance]


def lifts_of(site: Site) -> list[ModbusDevice]:
    return [d for d in site.devices_of("modbus") if d.kind == "elevator" and d.lift is not None]


def panels_of(site: Site) -> list[ModbusDevice]:
    return [d for d in site.devices_of("modbus") if d.kind == "fire_panel" and d.panel is not None]


def lift_presence(site: Site) -> list[PresenceSpec]:
    """Silence of a lift box or of the panel gateway is news (the panel's most of all)."""
    return [PresenceSpec(d.id, d.zone, max(d.poll_s, _MIN_EXPECTED_S),
                         "Elevator box" if d.kind == "elevator" else "Fire panel gateway",
                         "poll")
            for d in (*lifts_of(site), *panels_of(site))]


def build_modules(site: Site, db: Path | None = None) -> LiftModules:
    """The fire model, elevator rules and maintenance calendar; `db` (when it exists)
    gives each lift's last visit and first sighting, so a restart keeps the calendar."""
    # The fire model runs where the site has one: a fire panel, or a zone that says how
    # many triggers confirm its fires. Without either, a detector's alarm stands alone.
    modelled = bool(panels_of(site)) or any(
        z.fire_triggers is not None for b in site.buildings for z in b.zones)
    zones = [ZoneSpec(z.id, b.id, z.fire_triggers or 1, z.test_mode)
             for b in site.buildings for z in b.zones] if modelled else []
    points, panels = [], []
    for panel in panels_of(site):
        panels.append(PanelSpec(panel.id, panel.zone))
        assert panel.panel is not None
        points += [PointSpec(p.id, p.zone, panel.id, p.point, p.kind, p.name or p.id)
                   for p in panel.panel.points]
    cfg = site.rules.elevator
    lifts = []
    for d in lifts_of(site):
        assert d.lift is not None
        lifts.append(LiftSpec(d.id, d.zone, site.building_of_zone(d.zone).id, d.lift.firm,
                              d.lift.designated_floor, d.lift.fire_return_timeout_s,
                              d.lift.rated_speed_mps, d.lift.entrapment_s))
    m = cfg.maintenance
    visits: dict[str, float] = {}
    seen: dict[str, float] = {}
    if db is not None and db.exists() and lifts:
        try:
            with read_only(db) as conn:
                visits = last_visits(conn, m.min_visit_min * 60)
                seen = first_seen(conn)
        except sqlite3.Error as exc:  # a store that has no events table yet
            if "no such table" not in str(exc):
                raise
    return LiftModules(
        FireModel(zones, points, panels),
        ElevatorRules(ElevatorParams(cfg.entrapment_s, cfg.stopped_outside_s,
                                     cfg.overspeed_factor, cfg.door_stuck_s), lifts),
        LiftMaintenance(MaintenanceParams(m.half_monthly_days, m.site_monthly_days,
                                          m.min_visit_min),
                        [MaintenanceSpec(s.id, s.zone, s.firm) for s in lifts],
                        last_visits=visits, first_seen=seen),
    )


def report(site: Site, db: Path, firm: str, month: str, now: float | None = None) -> dict[str, Any]:
    """The month's compliance report for one firm, from the store at `db`."""
    firms = site.rules.elevator.firms
    if firm not in firms:
        raise ConfigError(f"unknown firm {firm!r} (known: {', '.join(sorted(firms)) or 'none'})")
    lifts = [LiftOfFirm(d.id, site.building_of_zone(d.zone).id, d.zone)
             for d in lifts_of(site) if d.lift is not None and d.lift.firm == firm]
    per_building: dict[str, int] = {}
    for d in lifts_of(site):
        building = site.building_of_zone(d.zone).id
        per_building[building] = per_building.get(building, 0) + 1
    with read_only(db) as conn:
        return monthly_report(
            conn, firm=firm, firm_name=firms[firm].name, lifts=lifts, month=month,
            timezone=site.site.timezone, now=time.time() if now is None else now,
            min_visit_s=site.rules.elevator.maintenance.min_visit_min * 60,
            building_lifts=per_building)
