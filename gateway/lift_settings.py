"""The site file's `rules.elevator` section (entrapment time, overspeed, the maintenance
firms and their calendar) and the cross-checks of lifts and fire panel points against
the rest of the site file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from gateway.config_parts import Found, Loc, Model, Name, Text

if TYPE_CHECKING:
    from gateway.config import Site


class Firm(Model):
    name: Text
    contact: Text | None = None  # where the monthly report is sent


class MaintenanceRules(Model):
    # TSG T5002-2017: a maintenance visit at least every 15 days.
    half_monthly_days: float = Field(default=15.0, ge=1, le=60)
    # The site's own rule: each firm inspects each of its lifts every month.
    site_monthly_days: float = Field(default=30.0, ge=1, le=90)
    # A technician signal shorter than this is a key turned by mistake, not a visit.
    min_visit_min: float = Field(default=10.0, ge=0, le=480)


class ElevatorRulesConfig(Model):
    # Stopped between landings, doors shut, someone inside, for this long: an entrapment.
    entrapment_s: float = Field(default=30.0, ge=5, le=600)
    # Stopped between landings while empty, for this long: a fault.
    stopped_outside_s: float = Field(default=60.0, ge=5, le=3600)
    # The governor trips at 115 % of rated speed (GB 7588); the alarm comes at this factor.
    overspeed_factor: float = Field(default=1.15, ge=1.0, le=2.0)
    firms: dict[Name, Firm] = Field(default_factory=dict)
    maintenance: MaintenanceRules = Field(default_factory=MaintenanceRules)


def lift_references(site: Site) -> list[Found]:
    """Lifts name a known firm; panel points sit in known zones and have ids of their own."""
    from drivers.modbus.config import ModbusDevice

    found: list[Found] = []
    zones = {z.id for b in site.buildings for z in b.zones}
    ids: dict[str, Loc] = {d.id: ("devices", i, "id") for i, d in enumerate(site.devices)}
    firms = site.rules.elevator.firms
    for d, device in enumerate(site.devices):
        if not isinstance(device, ModbusDevice):
            continue
        at: Loc = ("devices", d)
        if device.lift is not None and device.lift.firm not in firms:
            known = ", ".join(sorted(firms)) or "none"
            found.append(((*at, "lift", "firm"), f"firm {device.lift.firm!r} is not in"
                          f" rules.elevator.firms (known: {known})", None))
        if device.panel is None:
            continue
        for p, point in enumerate(device.panel.points):
            loc: Loc = (*at, "panel", "points", p)
            if point.zone not in zones:
                found.append(((*loc, "zone"), f"zone {point.zone!r} is not in buildings", None))
            if point.id in ids:
                found.append(((*loc, "id"), f"point id {point.id!r} is already a device or"
                              " point id", ids[point.id]))
            else:
                ids[point.id] = (*loc, "id")
    return found
