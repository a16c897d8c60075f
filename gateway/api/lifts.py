"""The desk API for lifts and the fire system: each lift's state and calendar, the zones'
fire model, the isolated fire points (a standing risk: what, since when, by zone), and
the monthly compliance report per firm as JSON."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from gateway.alerts import Alert
from gateway.errors import ConfigError
from gateway.lifts import LiftModules
from gateway.rules.fire_model import isolations

_dumps = functools.partial(json.dumps, ensure_ascii=False, default=str)
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")

Report = Callable[[str, str], dict[str, Any]]  # (firm, month) -> report


@dataclass
class LiftDesk:
    modules: Callable[[], LiftModules | None]
    firing: Callable[[], list[Alert]]
    report: Report
    now: Callable[[], float]
    zone_names: Mapping[str, str]
    building_names: Mapping[str, str] = field(default_factory=dict)


_LIFTS: Final = web.AppKey("lifts", LiftDesk)


def add_lift_routes(app: web.Application, desk: LiftDesk) -> None:
    app[_LIFTS] = desk
    app.router.add_get("/api/lifts", _lifts)
    app.router.add_get("/api/lifts/report", _report)
    app.router.add_get("/api/fire/zones", _zones)
    app.router.add_get("/api/fire/isolations", _isolations)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _modules(request: web.Request) -> LiftModules:
    mods = request.app[_LIFTS].modules()
    if mods is None:
        raise web.HTTPServiceUnavailable(text=_dumps({"error": "the core is starting"}),
                                         content_type="application/json")
    return mods


async def _lifts(request: web.Request) -> web.Response:
    desk = request.app[_LIFTS]
    mods = _modules(request)
    calendar = {c["lift"]: c for c in mods.maintenance.calendar(desk.now())}
    lifts = [lift | {"maintenance": calendar.get(str(lift["lift"])),
                     "building_name": desk.building_names.get(str(lift["building"]),
                                                              lift["building"])}
             for lift in mods.elevator.snapshot()]
    return _json({"lifts": lifts})


async def _zones(request: web.Request) -> web.Response:
    return _json({"zones": _modules(request).fire_model.zone_state()})


async def _isolations(request: web.Request) -> web.Response:
    desk = request.app[_LIFTS]
    return _json(isolations(desk.firing(), desk.zone_names))


async def _report(request: web.Request) -> web.Response:
    desk = request.app[_LIFTS]
    firm = request.query.get("firm", "")
    month = request.query.get("month", "")
    if not _MONTH.fullmatch(month):
        return _json({"error": "month must be YYYY-MM"}, 400)
    try:
        # SQLite reads of a month: off the loop, so alarms never wait behind a report.
        body = await asyncio.to_thread(desk.report, firm, month)
    except ConfigError as exc:
        return _json({"error": str(exc)}, 404)
    return _json(body)
