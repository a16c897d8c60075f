"""The plate push listener: the gateway's own HTTP server for the gate cameras, on a port
of its own apart from the desk API.

A push is taken only from a configured camera's source address (and with its secret
where it has one), within size caps; anything else gets a clear 4xx and is counted.
Pictures are written as files before the event that names them. A Vzenith-style read
awaits the rules' decision after its commit (`Sink.decide`) and the reply opens the gate;
a Hikvision-style read is answered 200 once committed and the gate is opened through its
HTTP control. Offline replays are committed as history and never open. Reads are
deduplicated on the camera's plate id: a repeat gets the first one's answer.

Commands (the desk's manual open, the fire linkage) go to the barrier's HTTP control,
whose state is read back; a Vzenith camera without one takes them in the reply to its
next heartbeat, unverified. Each result is also an event (`gate.state`), so the rules see
a barrier that answered and did not move.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from drivers.http_push.codec import (
    GATE_MODES,
    PlateRead,
    PushRejected,
    barrier_report,
    gate_control_body,
    gate_status,
    hikvision_kind,
    hikvision_parts,
    hikvision_plate,
    multipart_parts,
    parse_xml,
    vzenith_kind,
    vzenith_plate,
)
from gateway.clock import Clock, SystemClock
from gateway.commands import Command, CommandResult, CommandStatus, Decision
from gateway.contract import Link, Sink
from gateway.events import Event, Heartbeat, Severity, new_id
from gateway.tasks import log_failure
from gateway.vehicles.pictures import PictureStore
from gateway.vehicles.plates import classify
from gateway.vehicles.privacy import Pseudonyms

log = logging.getLogger("drivers.http_push")

DRIVER = "http_push"
# Plate ids remembered per camera for dedupe: far more than a camera resends.
SEEN_PER_CAMERA = 1024
VERIFY_POLL_S = 0.2
# A command for a camera told by heartbeat waits this long for one (the commander's own
# bound is 10 s).
HEARTBEAT_WAIT_S = 9.0
GATE_API_TIMEOUT_S = 3.0
PICTURE_EXPIRY_EVERY_S = 3600.0

VZENITH_OPEN = {"Response_AlarmInfoPlate": {"info": "ok", "content": "open"}}
VZENITH_SHUT = {"Response_AlarmInfoPlate": {"info": "no"}}


@dataclass(frozen=True, slots=True)
class GateSpec:
    id: str
    zone: str
    address: str
    vendor: str
    secret: bytes | None = field(default=None, repr=False)
    gate_api: str | None = None
    direction: str = "in"
    area: str | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    max_body: int = 2048 * 1024
    max_picture: int = 1024 * 1024
    decide_timeout_s: float = 1.5
    verify_s: float = 6.0  # the barrier's state is read back for this long


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, content_type=self.content_type)


def _json_answer(doc: object, status: int = 200) -> _Answer:
    return _Answer(status, json.dumps(doc, ensure_ascii=False).encode())


class _Refused(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason


class PlateListener:
    """Driver (run) and Commandable (execute) for every plate camera of the site."""

    def __init__(
        self, gates: list[GateSpec], sink: Sink, *, host: str, port: int, limits: Limits,
        pictures: PictureStore, pseudonyms: Pseudonyms, clock: Clock | None = None,
        on_answered: Callable[[str, float], None] | None = None,
        on_decided: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = "http_push:listener"
        self.gates = {g.id: g for g in gates}
        self._by_address = {g.address: g for g in gates}
        self._sink = sink
        self._host = host
        self._port = port
        self._limits = limits
        self._pictures = pictures
        self._names = pseudonyms
        self._clock = clock or SystemClock()
        # (vendor, seconds from the push received to its answer), for each plate read
        self._on_answered = on_answered
        # (gate, outcome) for a read the rules could not decide in time, or not stored
        self._on_decided = on_decided
        self._seen: dict[str, OrderedDict[str, asyncio.Future[_Answer]]] = {
            g.id: OrderedDict() for g in gates}
        # Commands for Vzenith cameras without a gate API, told with the next heartbeat.
        self._waiting: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port: int | None = None
        self.bound = asyncio.Event()
        self.refused = 0
        self.pictures_failed = 0

    # ---- running ------------------------------------------------------------------------
    async def run(self, link: Link) -> None:
        app = web.Application(client_max_size=self._limits.max_body)
        app.router.add_post("/push/vzenith", self._vzenith)
        app.router.add_post("/push/hikvision", self._hikvision)
        app.router.add_post("/push/barrier", self._barrier)
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=256)
            await site.start()
            self.port = int(runner.addresses[0][1])
            self.bound.set()
            link.up()
            log.info("plate push listener bound host=%s port=%d cameras=%d", self._host,
                     self.port, len(self.gates))
            while True:
                self._pictures.expire(self._clock.now())
                await asyncio.sleep(PICTURE_EXPIRY_EVERY_S)
        finally:
            self.bound.clear()
            await runner.cleanup()
            for task in list(self._tasks):
                task.cancel()
            if self._session is not None:
                await self._session.close()
                self._session = None

    # ---- the pushes ---------------------------------------------------------------------
    async def _vzenith(self, request: web.Request) -> web.Response:
        started = self._clock.monotonic()
        try:
            gate = self._camera(request, "vzenith")
            body = await self._body(request, gate)
            kind, doc = vzenith_kind(body)
            if kind == "heartbeat":
                return self._heartbeat(gate, vzenith=True).response()
            read = vzenith_plate(doc, self._limits.max_picture)
        except PushRejected as exc:
            return self._refuse(request, _Refused(400, exc.reason, str(exc)))
        except _Refused as exc:
            return self._refuse(request, exc)
        answer = await self._once(gate, read, self._decide_vzenith)
        self._answered("vzenith", started)
        return answer.response()

    async def _hikvision(self, request: web.Request) -> web.Response:
        started = self._clock.monotonic()
        try:
            gate = self._camera(request, "hikvision")
            body = await self._body(request, gate)
            content_type = request.headers.get("Content-Type", "")
            if content_type.lower().startswith("multipart/"):
                xml, pictures = hikvision_parts(multipart_parts(content_type, body),
                                                self._limits.max_picture)
            else:
                xml, pictures = body, ()
            root = parse_xml(xml)
            if hikvision_kind(root) == "heartbeat":
                return self._heartbeat(gate, vzenith=False).response()
            read = hikvision_plate(root, pictures)
        except PushRejected as exc:
            return self._refuse(request, _Refused(400, exc.reason, str(exc)))
        except _Refused as exc:
            return self._refuse(request, exc)
        answer = await self._once(gate, read, self._decide_hikvision)
        self._answered("hikvision", started)
        return answer.response()

    def _answered(self, vendor: str, started: float) -> None:
        if self._on_answered is not None:
            self._on_answered(vendor, self._clock.monotonic() - started)

    async def _barrier(self, request: web.Request) -> web.Response:
        """A barrier controller's report: its state, or a vehicle over its loop."""
        try:
            gate = self._camera(request, None)
            report = barrier_report(await self._body(request, gate))
        except PushRejected as exc:
            return self._refuse(request, _Refused(400, exc.reason, str(exc)))
        except _Refused as exc:
            return self._refuse(request, exc)
        now = self._clock.now()
        if report.state is not None:
            await self._event(gate, "gate.state", now, {"state": report.state,
                                                        "reported": "barrier"})
        if report.loop_passed:
            await self._event(gate, "gate.loop", now, {"loop": "passed"})
        try:
            await self._sink.settle()
        except Exception as exc:  # StoreFailed: the controller sends it again
            return _json_answer({"error": f"not stored: {exc}"}, 503).response()
        return _json_answer({"ok": True}).response()

    def _camera(self, request: web.Request, vendor: str | None) -> GateSpec:
        peer = request.remote or ""
        gate = self._by_address.get(peer)
        if gate is None:
            raise _Refused(403, "unknown_camera", f"no gate camera is configured at {peer}")
        if gate.secret is not None:
            given = request.query.get("key") or _basic_password(request)
            if given is None or not hmac.compare_digest(given.encode(), gate.secret):
                raise _Refused(401, "bad_secret", f"camera of {gate.id}: missing or wrong secret")
        if vendor is not None and gate.vendor != vendor:
            raise _Refused(400, "wrong_vendor",
                           f"{gate.id} is configured as {gate.vendor}, not {vendor}")
        return gate

    async def _body(self, request: web.Request, gate: GateSpec) -> bytes:
        cap = self._limits.max_body
        if (request.content_length or 0) > cap:
            raise _Refused(413, "too_large", f"push of {request.content_length} bytes is over"
                                             f" {cap}")
        try:
            # The whole body (a chunked one too), within the app's client_max_size.
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _Refused(413, "too_large", f"push over {cap} bytes") from None
        except (aiohttp.ClientError, ConnectionError, ValueError) as exc:
            raise _Refused(400, "bad_payload", f"body not read: {exc!r}") from None
        if len(body) > cap:
            raise _Refused(413, "too_large", f"push over {cap} bytes")
        return body

    def _refuse(self, request: web.Request, exc: _Refused) -> web.Response:
        self.refused += 1
        gate = self._by_address.get(request.remote or "")
        self._sink.rejected(DRIVER, exc.reason, str(exc), gate.id if gate else request.remote)
        return _json_answer({"error": str(exc), "reason": exc.reason}, exc.status).response()

    def _heartbeat(self, gate: GateSpec, *, vzenith: bool) -> _Answer:
        self._sink.telemetry(Heartbeat(gate.id, self._clock.now()))
        if not vzenith:
            return _Answer(200, b"OK", "text/plain")
        answer: dict[str, object] = {"info": "ok"}
        waiting = self._waiting.pop(gate.id, [])
        if waiting:
            action = waiting[-1][0]  # the newest command stands
            answer["gate"] = {"action": GATE_MODES[action][0]}
            for _, told in waiting:
                if not told.done():
                    told.set_result(None)
        return _json_answer({"Response_Heartbeat": answer})

    # ---- plate reads --------------------------------------------------------------------
    async def _once(
        self, gate: GateSpec, read: PlateRead,
        decide: Callable[[GateSpec, PlateRead, Event], Awaitable[_Answer]],
    ) -> _Answer:
        """Dedupe on the camera's plate id: a repeat (even while the first is deciding)
        gets the first one's answer and makes no second event."""
        seen = self._seen[gate.id]
        earlier = seen.get(read.plate_id)
        if earlier is not None:
            self._sink.sequence(DRIVER, gate.id, duplicate=True)
            return await asyncio.shield(earlier)
        answer: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        seen[read.plate_id] = answer
        while len(seen) > SEEN_PER_CAMERA:
            seen.popitem(last=False)
        writing: asyncio.Future[None] | None = None
        try:
            event, pictures = self._plate_event(gate, read)
            if pictures:
                # Written beside the commit, not before it: the decision does not wait
                # for the picture files, the answer does.
                writing = asyncio.create_task(
                    asyncio.to_thread(self._write_pictures, gate, pictures),
                    name=f"plate-pictures:{gate.id}")
                # Awaited below; when the decision fails first, its failure still logs.
                writing.add_done_callback(log_failure)
            result = await decide(gate, read, event)
            if writing is not None:
                await writing
        except BaseException as exc:
            seen.pop(read.plate_id, None)
            if isinstance(exc, asyncio.CancelledError):
                answer.cancel()
            else:
                answer.set_exception(exc)
                answer.exception()  # retrieved: a duplicate waiting on it sees it too
            raise
        if result.status >= 500:
            seen.pop(read.plate_id, None)  # not stored: a resend is no duplicate
        answer.set_result(result)
        return result

    def _write_pictures(self, gate: GateSpec, pictures: list[tuple[str, bytes]]) -> None:
        """On a worker thread. A picture that cannot be written is logged; the read and
        its decision stand (the barrier does not wait on the picture folder)."""
        for name, data in pictures:
            try:
                self._pictures.write(name, data)
            except OSError as exc:
                self.pictures_failed += 1
                log.error("plate picture not written gate=%s picture=%s error=%r", gate.id,
                          name, exc)

    def _plate_event(self, gate: GateSpec, read: PlateRead
                     ) -> tuple[Event, list[tuple[str, bytes]]]:
        """The read's event, and its pictures to write under the names the event gives."""
        now = self._clock.now()
        event_id = new_id(now)
        writes = [(self._pictures.name(event_id, n, data, now), data)
                  for n, data in enumerate(read.pictures)]
        pictures = [name for name, _ in writes]
        return Event(
            "gate.plate", gate.id, seq=self._sink.next_seq(gate.id), time=now,
            severity=Severity.INFO, zone=gate.zone, device_time=read.device_time, id=event_id,
            data={"plate": read.plate, "raw": read.raw, "plate_kind": classify(read.plate).value,
                  "plate_id": read.plate_id, "confidence": read.confidence,
                  "colour": read.colour, "offline": read.offline,
                  "province_low_confidence": read.province_low_confidence,
                  "pictures": pictures, "vendor": gate.vendor},
        ), writes

    def _decided(self, gate: GateSpec, outcome: str) -> None:
        if self._on_decided is not None:
            self._on_decided(gate.id, outcome)

    def _outcome(self, gate: GateSpec, decision: Decision) -> None:
        # Opens and refusals are counted by the rules, which see the barrier's read-back;
        # a read the rules did not answer in time is known here only.
        if not decision.asks("open", gate.id) and decision.reason.startswith("no decision"):
            self._decided(gate, "no_decision")

    async def _decide_vzenith(self, gate: GateSpec, read: PlateRead, event: Event) -> _Answer:
        if read.offline:
            return await self._history(gate, event, _json_answer(VZENITH_SHUT))
        decision = await self._sink.decide(event, self._limits.decide_timeout_s)
        if decision.reason.startswith("not committed"):
            self._decided(gate, "not_stored")
            return _json_answer({"error": decision.reason}, 503)
        self._outcome(gate, decision)
        opens = decision.asks("open", gate.id)
        self._log_decision(gate, read, decision)
        for command in decision.commands:
            if command.device != gate.id:
                self._spawn(self._carry_out(command))
        return _json_answer(VZENITH_OPEN if opens else VZENITH_SHUT)

    async def _decide_hikvision(self, gate: GateSpec, read: PlateRead, event: Event) -> _Answer:
        if read.offline:
            return await self._history(gate, event, _Answer(200, b"OK", "text/plain"))
        decision = await self._sink.decide(event, self._limits.decide_timeout_s)
        if decision.reason.startswith("not committed"):
            self._decided(gate, "not_stored")
            return _json_answer({"error": decision.reason}, 503)
        if not decision.allow and decision.reason.startswith("no decision"):
            # The camera never resends: answer only once the read is stored.
            try:
                await asyncio.wait_for(self._sink.settle(), self._limits.decide_timeout_s)
            except Exception as exc:
                self._decided(gate, "not_stored")
                return _json_answer({"error": f"not stored: {exc!r}"}, 503)
        self._outcome(gate, decision)
        self._log_decision(gate, read, decision)
        for command in decision.commands:
            self._spawn(self._carry_out(command))
        return _Answer(200, b"OK", "text/plain")

    async def _history(self, gate: GateSpec, event: Event, ok: _Answer) -> _Answer:
        """An offline record: stored, acknowledged so the camera stops resending; never
        an open."""
        await self._sink.event(event)
        try:
            await self._sink.settle()
        except Exception as exc:
            self._decided(gate, "not_stored")
            return _json_answer({"error": f"not stored: {exc!r}"}, 503)
        self._decided(gate, "offline")
        return ok

    def _log_decision(self, gate: GateSpec, read: PlateRead, decision: Decision) -> None:
        fuzzy = [c.why for c in decision.commands if "(fuzzy:" in c.why]
        if fuzzy:
            # A fuzzy open is worth a line; the reason names pseudonyms, never plates.
            log.info("gate=%s fuzzy match opened why=%r", gate.id, fuzzy[0])
        if not decision.allow:
            log.info("gate=%s plate=%s not opened reason=%r", gate.id,
                     self._names.ref(read.plate), decision.reason or "refused by the rules")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="gate-command")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure)

    async def _carry_out(self, command: Command) -> None:
        """A decision's command: already audited with its event; carried out here."""
        result = await self.execute(command)
        if not result.done:
            log.warning("decision command not done device=%s action=%s status=%s detail=%r",
                        command.device, command.action, result.status.value, result.detail)

    async def _event(self, gate: GateSpec, kind: str, now: float, data: dict[str, object],
                     severity: Severity = Severity.INFO) -> None:
        await self._sink.event(Event(kind, gate.id, seq=self._sink.next_seq(gate.id), time=now,
                                     severity=severity, zone=gate.zone, data=data))

    # ---- commands -----------------------------------------------------------------------
    async def execute(self, command: Command) -> CommandResult:
        gate = self.gates.get(command.device)
        if gate is None or command.action not in GATE_MODES:
            return CommandResult(CommandStatus.FAILED,
                                 f"{command.device} takes no {command.action!r} here")
        if gate.gate_api is not None:
            result = await self._gate_api(gate, command.action)
        elif gate.vendor == "vzenith":
            result = await self._with_heartbeat(gate, command.action)
        else:
            result = CommandResult(CommandStatus.FAILED, f"{gate.id} has no gate_api")
        state = result.read_back if isinstance(result.read_back, str) else "unknown"
        await self._event(gate, "gate.state", self._clock.now(), {
            "state": state, "commanded": command.action, "status": result.status.value,
            "detail": result.detail[:200]})
        return result

    async def _gate_api(self, gate: GateSpec, action: str) -> CommandResult:
        assert gate.gate_api is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=GATE_API_TIMEOUT_S))
        want = GATE_MODES[action][1]
        try:
            async with self._session.put(gate.gate_api, data=gate_control_body(action),
                                         headers={"Content-Type": "application/xml"}) as r:
                if r.status >= 300:
                    return CommandResult(CommandStatus.FAILED, f"the barrier answered {r.status}")
            state = "unknown"
            deadline = self._clock.monotonic() + self._limits.verify_s
            while True:
                async with self._session.get(f"{gate.gate_api}/status") as r:
                    state = gate_status(await r.read()) if r.status == 200 else "unknown"
                if state == want:
                    return CommandResult(CommandStatus.VERIFIED, f"reads {state}", state)
                if self._clock.monotonic() >= deadline:
                    return CommandResult(CommandStatus.FAILED,
                                         f"commanded {action}, reads {state}", state)
                await asyncio.sleep(VERIFY_POLL_S)
        except (aiohttp.ClientError, TimeoutError, PushRejected) as exc:
            return CommandResult(CommandStatus.FAILED, f"barrier control: {exc!r}"[:200])

    async def _with_heartbeat(self, gate: GateSpec, action: str) -> CommandResult:
        told: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(gate.id, []).append((action, told))
        try:
            await asyncio.wait_for(told, HEARTBEAT_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ValueError):
                self._waiting.get(gate.id, []).remove((action, told))
            return CommandResult(CommandStatus.FAILED, "no heartbeat came to carry it")
        return CommandResult(CommandStatus.UNVERIFIED, "told in the heartbeat reply")


def _basic_password(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user_pass = base64.b64decode(header[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user_pass.partition(":")[2] or None


