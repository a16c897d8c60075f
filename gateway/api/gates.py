"""The desk's routes for the barrier gates, on the desk API:

- `GET  /api/gates`                      gates, fire holds and zone occupancy
- `POST /api/gates/{gate}/open`          open by hand: `{"reason", "operator", "plate"?}`
- `POST /api/gates/release`              end the fire hold: `{"reason", "operator", "gates"?}`
- `GET  /api/gates/pictures/{day}/{file}` a plate picture (the access is logged)
- `GET  /api/vehicles/{plate}`           one registry entry (the read is logged)
- `POST /api/vehicles/passes`            a visitor pass: `{"plate", "owner_unit", "hours",
                                          "reason", "operator"}`

A manual open goes through the commander (guard, audit, driver, read-back) and, once
done, becomes a `gate.manual_open` event so the rules clear the refusal and count the
vehicle. A release is a `gate.release` event: the vehicle rules send each barrier its
`release` command, audited under the operator's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from gateway.api.audited import BadBody, answer, read_object, reason_operator, required, who_from
from gateway.clock import Clock
from gateway.commands import Command, CommandResult, CommandStatus
from gateway.contract import Sink
from gateway.events import Event, Severity
from gateway.vehicles.plates import normalise
from gateway.vehicles.registry import RegistryError
from gateway.vehicles.wiring import Gates

_STATUS: Final = {CommandStatus.VERIFIED: 200, CommandStatus.UNVERIFIED: 200,
                  CommandStatus.REFUSED: 403, CommandStatus.FAILED: 502}


class _GateDesk:
    def __init__(self, gates: Gates, commands: Callable[[Command], Awaitable[CommandResult]],
                 sink: Callable[[], Sink], clock: Clock) -> None:
        self.gates = gates
        self.commands = commands
        self.sink = sink  # the current core's ingest (it is rebuilt with the core)
        self.clock = clock


_KEY: Final = web.AppKey("gate_desk", _GateDesk)


def add_gate_routes(app: web.Application, gates: Gates,
                    commands: Callable[[Command], Awaitable[CommandResult]],
                    sink: Callable[[], Sink], clock: Clock) -> None:
    app[_KEY] = _GateDesk(gates, commands, sink, clock)
    app.router.add_get("/api/gates", _list)
    app.router.add_post("/api/gates/release", _release)
    app.router.add_post("/api/gates/{gate}/open", _open)
    app.router.add_get("/api/gates/pictures/{day}/{file}", _picture)
    app.router.add_post("/api/vehicles/passes", _pass)
    app.router.add_get("/api/vehicles/{plate}", _vehicle)


def _error(status: int, message: str) -> web.Response:
    return answer({"error": message}, status)


async def _list(request: web.Request) -> web.Response:
    desk = request.app[_KEY]
    module = desk.gates.rule_module
    held = set(module.holding()) if module is not None else set()
    return answer({
        "gates": [{"id": d.id, "zone": d.zone, "direction": d.direction, "area": d.area,
                   "vendor": getattr(d, "vendor", "mqtt"), "held_open_by_fire": d.id in held}
                  for d in desk.gates.all_gates],
        "occupancy": desk.gates.occupancy(),
    })


async def _open(request: web.Request) -> web.Response:
    desk = request.app[_KEY]
    gate = request.match_info["gate"]
    if gate not in {d.id for d in desk.gates.all_gates}:
        return _error(404, f"no gate {gate}")
    try:
        body = await read_object(request)
        reason, operator = reason_operator(body)
        plate = normalise(str(body.get("plate", "")))[:16]
    except BadBody as exc:
        return _error(400, str(exc))
    who = who_from(request, operator)
    result = await desk.commands(Command(gate, "open", who=who, why=reason))
    if result.done:
        sink = desk.sink()
        device = next(d for d in desk.gates.all_gates if d.id == gate)
        await sink.event(Event("gate.manual_open", gate, seq=sink.next_seq(gate),
                               time=desk.clock.now(), severity=Severity.INFO, zone=device.zone,
                               data={"who": who, "why": reason, "plate": plate}))
    return answer({"gate": gate, "action": "open", **result.to_json()}, _STATUS[result.status])


async def _release(request: web.Request) -> web.Response:
    desk = request.app[_KEY]
    try:
        body = await read_object(request)
        reason, operator = reason_operator(body)
        asked = body.get("gates")
        if asked is not None and (not isinstance(asked, list)
                                  or not all(isinstance(g, str) for g in asked)):
            raise BadBody("gates must be a list of gate ids")
    except BadBody as exc:
        return _error(400, str(exc))
    known = {d.id for d in desk.gates.all_gates}
    unknown = sorted(set(asked or []) - known)
    if unknown:
        return _error(404, f"no gate(s) {', '.join(unknown)}")
    module = desk.gates.rule_module
    held = module.holding() if module is not None else []
    gates = [g for g in (asked or held) if g in held]
    if not gates:
        return _error(409, "no barrier is held open by the fire linkage")
    sink = desk.sink()
    await sink.event(Event("gate.release", "barrier-gates", seq=sink.next_seq("barrier-gates"),
                           time=desk.clock.now(), severity=Severity.MAJOR,
                           data={"gates": gates, "who": who_from(request, operator),
                                 "why": reason}))
    try:
        await sink.settle()
    except Exception as exc:
        return _error(503, f"not stored: {exc!r}")
    return answer({"released": gates}, 202)


async def _picture(request: web.Request) -> web.StreamResponse:
    desk = request.app[_KEY]
    name = f"{request.match_info['day']}/{request.match_info['file']}"
    path = desk.gates.pictures.path(name)
    if path is None:
        return _error(404, "no such picture")
    desk.gates.registry.log_access(actor=f"api from {request.remote or '-'}",
                                   action="picture.read", plate="-", now=desk.clock.now(),
                                   detail={"picture": name})
    return web.FileResponse(path, headers={"Cache-Control": "no-store"})


async def _vehicle(request: web.Request) -> web.Response:
    desk = request.app[_KEY]
    plate = normalise(request.match_info["plate"])[:16]
    operator = request.query.get("operator", "").strip()[:60] or "unnamed"
    vehicle = desk.gates.registry.read(plate, actor=who_from(request, operator),
                                       now=desk.clock.now())
    if vehicle is None:
        return _error(404, f"{plate} is not registered")
    return answer({"plate": vehicle.plate, "kind": vehicle.kind.value,
                   "owner_unit": vehicle.owner_unit, "class": vehicle.vclass.value,
                   "gates": sorted(vehicle.gates), "zones": sorted(vehicle.zones),
                   "valid_from": vehicle.valid_from, "valid_until": vehicle.valid_until,
                   "note": vehicle.note})


async def _pass(request: web.Request) -> web.Response:
    desk = request.app[_KEY]
    try:
        body = await read_object(request)
        plate = required(body, "plate", 20)
        reason, operator = reason_operator(body)
        owner = str(body.get("owner_unit", "visitor"))[:60]
        hours = body.get("hours", 4)
        if isinstance(hours, bool) or not isinstance(hours, int | float):
            raise BadBody("hours must be a number")
        gates = body.get("gates", ["*"])
        if not isinstance(gates, list) or not all(isinstance(g, str) for g in gates):
            raise BadBody("gates must be a list of gate ids")
    except BadBody as exc:
        return _error(400, str(exc))
    try:
        vehicle = desk.gates.registry.issue_pass(
            plate, owner_unit=owner, hours=float(hours), actor=who_from(request, operator),
            why=reason, now=desk.clock.now(), gates=gates)
    except RegistryError as exc:
        return _error(422, str(exc))
    return answer({"plate": vehicle.plate, "valid_from": vehicle.valid_from,
                   "valid_until": vehicle.valid_until}, 201)
