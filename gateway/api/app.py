"""The gateway's HTTP side: alerts as JSON and as a live feed (SSE) for the security desk,
the desk page itself, commands to devices (guarded and audited by the core), the
Prometheus scrape page and the health check."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol

from aiohttp import web

from gateway.alerts import Alert, AlertChange
from gateway.api.audited import BadBody, read_object, reason_operator, required, who_from
from gateway.api.bounds import BoundedSite, ConnectionGate, HttpLimits
from gateway.commands import Command, CommandResult, CommandStatus
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).parent / "static"
KEEPALIVE_SECONDS: Final = 15.0
# Below the 15 s keep-alive: a desk whose link dropped is back before anyone would notice.
RECONNECT_MS: Final = 2000
MAX_LIMIT: Final = 1000
# A desk refused at the feed limit comes back on its own (desk.js reconnects a silent
# feed); this tells other clients when to try.
FEED_RETRY_AFTER_S: Final = 10
# The page loads nothing from elsewhere (the site is air-gapped) and is never framed.
DESK_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'"
)

_dumps = functools.partial(json.dumps, ensure_ascii=False, default=str)


class AlertSubscription(Protocol):
    """What `AlertBook.subscribe()` returns: changes in order, closed on leaving `async with`.

    `dropped` counts changes lost because this reader fell behind."""

    dropped: int

    def __aiter__(self) -> AsyncIterator[AlertChange]: ...

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> object: ...


class AlertSource(Protocol):
    """The part of `gateway.alerts.AlertBook` the API reads."""

    def active(self) -> list[Alert]: ...

    def recent(self, limit: int = 200) -> list[Alert]: ...

    def get(self, alert_id: str) -> Alert | None: ...

    def subscribe(self) -> AlertSubscription: ...


Health = Callable[[], Mapping[str, Any]]
History = Callable[[int], list[dict[str, Any]]]
# limit -> the newest dead-letter rows (refused for good by a target), as JSON dicts.
DeadLetters = Callable[[int], list[dict[str, Any]]]
# The core's `Commander.execute`: guard, audit, driver, read-back.
Commands = Callable[[Command], Awaitable[CommandResult]]
# A device command's action is a short name from the device's allow list.
ACTION_MAX = 60
_COMMAND_STATUS: Final = {
    CommandStatus.VERIFIED: 200, CommandStatus.UNVERIFIED: 200,
    CommandStatus.REFUSED: 403, CommandStatus.FAILED: 502,
}


@dataclass
class _Desk:
    book: AlertSource
    metrics: Metrics
    health: Health
    history: History | None
    dead_letters: DeadLetters | None
    commands: Commands | None
    keepalive: float
    max_feeds: int
    zone_names: Mapping[str, str] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    streams: int = 0

    def view(self, alert: Alert) -> dict[str, Any]:
        """An alert as the desk shows it: with its zone's name, not just the zone's id."""
        doc = alert.to_json()
        doc["zone_name"] = self.zone_names.get(alert.zone, alert.zone)
        return doc


_DESK: Final = web.AppKey("desk", _Desk)
_GATE: Final = web.AppKey("gate", ConnectionGate)


def make_app(
    *,
    book: AlertSource,
    metrics: Metrics,
    health: Health,
    history: History | None = None,
    dead_letters: DeadLetters | None = None,
    keepalive: float = KEEPALIVE_SECONDS,
    zone_names: Mapping[str, str] | None = None,
    limits: HttpLimits | None = None,
    commands: Commands | None = None,
) -> web.Application:
    """The API. `history(limit)` gives resolved alerts from the store (newest first, as
    `Alert.to_json()` dicts); without it `recent` comes from the book's memory.
    `dead_letters(limit)` lists the outbox rows targets refused for good. `limits` bound
    connections and feeds when the app is started with `serve`. `commands` carries out
    `POST /api/devices/{id}/commands`; without it the endpoint answers 404."""
    limits = limits or HttpLimits()
    gate = ConnectionGate(limits, metrics)
    app = web.Application(middlewares=[gate.middleware])
    desk = _Desk(book, metrics, health, history, dead_letters, commands, keepalive,
                 limits.max_feed_clients, dict(zone_names or {}))
    app[_DESK] = desk
    app[_GATE] = gate
    metrics.bind_http(connections=lambda: len(gate), feeds=lambda: desk.streams)
    app.router.add_get("/", _desk_page)
    app.router.add_get("/api/alerts", _alerts)
    app.router.add_get("/api/alerts/stream", _stream)
    app.router.add_get("/api/alerts/{alert_id}", _alert)
    app.router.add_get("/api/outbox/dead", _dead_letters)
    app.router.add_post("/api/devices/{device_id}/commands", _command)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_static("/static/", STATIC_DIR)
    app.on_shutdown.append(_end_streams)
    return app


async def serve(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 2.0
) -> web.AppRunner:
    """Start `app` on host:port with its connection bounds; the caller cleans it up."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await BoundedSite(runner, host, port, app[_GATE]).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def desk_connections(app: web.Application) -> int:
    """Live feeds open now (a health check can tell whether the desk is watching)."""
    return app[_DESK].streams


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=_dumps({"error": message}), content_type="application/json")


async def _desk_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC_DIR / "desk.html",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": DESK_POLICY},
    )


def _limit(request: web.Request, default: int) -> int:
    try:
        limit = int(request.query.get("limit", str(default)))
    except ValueError:
        raise _bad_request("limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


async def _alerts(request: web.Request) -> web.Response:
    desk = request.app[_DESK]
    state = request.query.get("state", "all")
    if state not in ("firing", "all"):
        raise _bad_request("state must be 'firing' or 'all'")
    limit = _limit(request, 200)
    # `limit` bounds only the history: every firing alert is always listed.
    active = [desk.view(a) for a in desk.book.active()]
    recent: list[dict[str, Any]] = []
    if state == "all":
        if desk.history is not None:
            recent = desk.history(limit)
        else:
            recent = [desk.view(a) for a in desk.book.recent(limit)]
    return _json({"active": active, "recent": recent})


async def _alert(request: web.Request) -> web.Response:
    alert = request.app[_DESK].book.get(request.match_info["alert_id"])
    if alert is None:
        raise web.HTTPNotFound(
            text=_dumps({"error": "no such alert"}), content_type="application/json"
        )
    return _json(request.app[_DESK].view(alert))


async def _dead_letters(request: web.Request) -> web.Response:
    """Rows a target refused for good (newest first): they are never sent again."""
    desk = request.app[_DESK]
    limit = _limit(request, 100)
    return _json({"dead": [] if desk.dead_letters is None else desk.dead_letters(limit)})


async def _command(request: web.Request) -> web.Response:
    """One command to one device: `{"action", "value"?, "reason", "operator"}`. The answer
    is the audited result: 200 done, 403 refused, 502 failed."""
    desk = request.app[_DESK]
    if desk.commands is None:
        raise web.HTTPNotFound(
            text=_dumps({"error": "commands are not enabled"}), content_type="application/json"
        )
    try:
        # The same body rules and 400 messages as the cameras' and the gates' desk actions.
        body = await read_object(request)
        action = required(body, "action", ACTION_MAX)
        reason, operator = reason_operator(body)
    except BadBody as exc:
        raise _bad_request(str(exc)) from None
    value = body.get("value")
    if value is not None and not isinstance(value, bool | int | float | str):
        raise _bad_request("value must be a number, a string or a boolean")
    command = Command(request.match_info["device_id"], action, value,
                      who=who_from(request, operator), why=reason)
    result = await desk.commands(command)
    return _json({"device": command.device, "action": action, **result.to_json()},
                 status=_COMMAND_STATUS[result.status])


def _sse(event: str, data: Mapping[str, Any], event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {_dumps(data)}\n\n".encode()


def _snapshot(desk: _Desk) -> bytes:
    active = [desk.view(a) for a in desk.book.active()]
    return _sse("snapshot", {"active": active, "keepalive": desk.keepalive})


async def _next_change(changes: AsyncIterator[AlertChange]) -> AlertChange | None:
    try:
        return await anext(changes)
    except StopAsyncIteration:
        return None


async def _stream(request: web.Request) -> web.StreamResponse:
    """Snapshot first, then each change; the page rebuilds from the snapshot on reconnect."""
    desk = request.app[_DESK]
    if desk.streams >= desk.max_feeds:
        # Feeds live for hours: past their cap they would take the connections that
        # /healthz and /metrics need.
        desk.metrics.http_refused("feed_limit")
        raise web.HTTPServiceUnavailable(
            text=_dumps({"error": "too many live feeds"}), content_type="application/json",
            headers={"Retry-After": str(FEED_RETRY_AFTER_S)},
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            # A reverse proxy must pass each event on at once, not buffer the stream.
            "X-Accel-Buffering": "no",
        }
    )
    # Subscribe before taking the snapshot: a change in between arrives twice (the page
    # keys rows by id), never not at all.
    subscription = desk.book.subscribe()
    # Counted before the first await: clients arriving together cannot all pass the cap.
    desk.streams += 1
    try:
        async with subscription:
            await response.prepare(request)
            await _feed(desk, response, subscription)
    finally:
        desk.streams -= 1
    return response


async def _feed(
    desk: _Desk, response: web.StreamResponse, subscription: AlertSubscription
) -> None:
    changes = aiter(subscription)
    stopping = asyncio.create_task(desk.stopping.wait(), name="desk-stream-stopping")
    upcoming = asyncio.create_task(_next_change(changes), name="desk-stream-next")
    try:
        await response.write(f"retry: {RECONNECT_MS}\n".encode() + _snapshot(desk))
        dropped = subscription.dropped
        while True:
            done, _ = await asyncio.wait(
                (upcoming, stopping),
                timeout=desk.keepalive,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if stopping in done:
                break
            if upcoming in done:
                change = upcoming.result()
                if change is None:
                    break
                await response.write(
                    _sse(
                        "alert",
                        {"change": change.change, "alert": desk.view(change.alert)},
                        change.alert.id,
                    )
                )
                if subscription.dropped != dropped:
                    # This desk fell behind and lost changes: the snapshot is the truth,
                    # and the changes still queued are older than it, so replaying
                    # them on top of it ends in the same state.
                    dropped = subscription.dropped
                    await response.write(_snapshot(desk))
                upcoming = asyncio.create_task(_next_change(changes), name="desk-stream-next")
            else:
                # The comment keeps proxies from timing the stream out; the `ping` event
                # is what the page sees (EventSource hides comments) to notice a dead link.
                await response.write(b": keep-alive\nevent: ping\ndata: {}\n\n")
    except ConnectionResetError:
        pass  # the desk went away; its browser reconnects on its own
    finally:
        for task in (upcoming, stopping):
            task.cancel()
        await asyncio.gather(upcoming, stopping, return_exceptions=True)


async def _end_streams(app: web.Application) -> None:
    # Runs before aiohttp waits for open handlers, so SIGTERM is not held up by live feeds.
    app[_DESK].stopping.set()


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[_DESK].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _healthz(request: web.Request) -> web.Response:
    try:
        report = dict(request.app[_DESK].health())
    except Exception:
        log.exception("health check failed")
        report = {"status": "error"}
    return _json(report, status=200 if report.get("status") == "ok" else 503)
