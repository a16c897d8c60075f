"""What the site file says of one elevator or one fire panel beyond its address: the
lift's building, firm, floors, home floor in a fire and the firmware of its box; the
panel's points (where each one is and what it is). Pure pydantic, no pymodbus."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.config_parts import Found, Model, Name, Text, located


class Floors(Model):
    lowest: int = Field(ge=-10, le=200)
    highest: int = Field(ge=-10, le=200)

    @model_validator(mode="after")
    def _ordered(self) -> Floors:
        if self.lowest >= self.highest:
            raise located([(("lowest",), f"lowest {self.lowest} must be below highest"
                            f" {self.highest}", None)])
        return self


class LiftSettings(Model):
    """One elevator: who maintains it, where it goes in a fire, what its box runs."""

    firm: Name  # a key of rules.elevator.firms
    floors: Floors
    # Fire return (GB 50116): the floor every lift homes to, doors open, in a fire.
    designated_floor: int = 1
    # Travel time from the farthest landing plus a margin.
    fire_return_timeout_s: float = Field(default=90.0, ge=10, le=900)
    rated_speed_mps: float = Field(default=1.75, gt=0, le=20)
    firmware: str = "default"  # which fault table of the profile the box uses
    # Held this long, stopped between landings with the doors shut and someone inside, is
    # an entrapment. None: rules.elevator.entrapment_s.
    entrapment_s: float | None = Field(default=None, ge=5, le=600)

    @model_validator(mode="after")
    def _home_is_a_floor(self) -> LiftSettings:
        if not self.floors.lowest <= self.designated_floor <= self.floors.highest:
            raise located([(("designated_floor",), f"floor {self.designated_floor} is not"
                            f" between {self.floors.lowest} and {self.floors.highest}", None)])
        return self


class PanelPoint(Model):
    """One point of the fire panel (a detector, a manual call point, a module)."""

    point: int = Field(ge=1, le=999)  # its number on the panel's gateway
    id: Name  # the source of its events and alerts
    zone: str
    kind: Literal["detector", "manual_call_point", "module"] = "detector"
    name: Text | None = None


class PanelSettings(Model):
    points: list[PanelPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> PanelSettings:
        found: list[Found] = []
        numbers: dict[int, int] = {}
        ids: dict[str, int] = {}
        for i, p in enumerate(self.points):
            if p.point in numbers:
                found.append((("points", i, "point"), f"point {p.point} listed twice",
                              ("points", numbers[p.point], "point")))
            numbers.setdefault(p.point, i)
            if p.id in ids:
                found.append((("points", i, "id"), f"point id {p.id!r} listed twice",
                              ("points", ids[p.id], "id")))
            ids.setdefault(p.id, i)
        if found:
            raise located(found)
        return self
