"""Bounds on the HTTP side, so that /healthz and /metrics answer whatever clients do.

aiohttp on its own keeps an idle keep-alive connection for an hour, takes any number of
connections and gives a client all the time it likes to send its headers: enough idle
or slow sockets exhaust the process's file descriptors and the health check goes dark.
Here:

- at most `max_connections` are open; a newcomer past it closes the connection idle the
  longest (no request in progress: keep-alive, or still waiting for headers), so a
  health check always gets in while some connection is merely idle; when every one is
  busy it is answered 503 and closed;
- a connection must deliver a request's headers within `header_timeout_s` of opening or
  of its first byte after the previous response, and an idle keep-alive connection is
  closed after `keepalive_s` (aiohttp's own `keepalive_timeout`);
- a malformed request is answered 400 and logged as one line per kind, at most once per
  `BAD_REQUEST_LOG_EVERY_S`, never with a traceback; errors of the gateway's own handlers
  keep aiohttp's full report.

The live feed's own cap (`max_feed_clients`) is in `gateway.api.app`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest

from gateway.metrics import Metrics

log = logging.getLogger("gateway.http")

# One line per kind of malformed request per this long: a scanner sending garbage all
# day costs a line every ten minutes, and the counter has the rest.
BAD_REQUEST_LOG_EVERY_S: Final = 600.0
# What a client gets when every connection is busy; it may come back in a second.
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
    b"Connection: close\r\n\r\n"
)
_TIMEOUT: Final = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The bounds; the site file's `gateway.http` carries the same names and defaults."""

    max_connections: int = 256
    max_feed_clients: int = 64
    keepalive_s: float = 15.0
    header_timeout_s: float = 5.0


class _BadRequestLog:
    """Counts every malformed request; logs one line per kind per interval."""

    def __init__(self, metrics: Metrics, every_s: float = BAD_REQUEST_LOG_EVERY_S) -> None:
        self._metrics = metrics
        self._every = every_s
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def __call__(self, kind: str, peer: str | None, now: float) -> None:
        self._metrics.http_bad_request(kind)
        last = self._last.get(kind)
        if last is not None and now - last < self._every:
            self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
            return
        self._last[kind] = now
        log.warning(
            "http bad request answered 400 kind=%s peer=%s unlogged_since_last=%d",
            kind, peer, self._unlogged.pop(kind, 0),
        )


class ConnectionGate:
    """The open connections of one HTTP server, and who gives way when it is full."""

    def __init__(self, limits: HttpLimits, metrics: Metrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.bad_request = _BadRequestLog(metrics)
        # Insertion-ordered: among equally idle connections the oldest goes first.
        self._open: dict[GuardedHandler, None] = {}

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, handler: GuardedHandler) -> bool:
        if len(self._open) >= self.limits.max_connections:
            idle = [h for h in self._open if not h.busy]
            if not idle:
                self.metrics.http_refused("busy")
                return False
            victim = min(idle, key=lambda h: h.last_active)
            self.release(victim)
            victim.force_close()
            self.metrics.http_refused("evicted")
        self._open[handler] = None
        return True

    def release(self, handler: GuardedHandler) -> None:
        self._open.pop(handler, None)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Marks the connection busy while a handler runs (a live feed: all along)."""
        protocol = request.protocol
        if not isinstance(protocol, GuardedHandler):
            return await handler(request)  # served without the gate (tests, other sites)
        protocol.request_started()
        try:
            return await handler(request)
        finally:
            protocol.request_finished()


class GuardedHandler(web.RequestHandler):
    """aiohttp's connection handler, admitted by the gate and timed on its headers."""

    def __init__(self, manager: web.Server, gate: ConnectionGate, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._gate = gate
        self.busy = 0
        self.last_active = self._loop.time()
        self._header_timer: asyncio.TimerHandle | None = None
        self._heard = False  # bytes of a request arrived since the timer started

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._gate.admit(self):
            if self.transport is not None:
                self.transport.write(_BUSY)
            self.force_close()
            return
        self._arm(heard=False)

    def data_received(self, data: bytes) -> None:
        if data:
            self.last_active = self._loop.time()
            if not self.busy:
                if self._header_timer is None:
                    self._arm(heard=True)  # the first byte of the next request on this link
                self._heard = True
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._gate.release(self)
        super().connection_lost(exc)

    def request_started(self) -> None:
        self.busy += 1
        self._disarm()

    def request_finished(self) -> None:
        self.busy -= 1
        self.last_active = self._loop.time()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 400 and isinstance(exc, HttpProcessingError):
            # The parser refused what the client sent: its mistake, not ours, and no
            # traceback of the parser tells anyone anything.
            self._gate.bad_request(type(exc).__name__, request.remote, self._loop.time())
            response = web.Response(status=400, text="400 Bad Request\n")
            response.force_close()
            return response
        return super().handle_error(request, status, exc, message)

    def _arm(self, *, heard: bool) -> None:
        self._disarm()
        self._heard = heard
        self._header_timer = self._loop.call_later(
            self._gate.limits.header_timeout_s, self._headers_late
        )

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.busy or self.transport is None:
            return
        self._gate.metrics.http_refused("header_timeout")
        if self._heard:
            self.transport.write(_TIMEOUT)
        self.force_close()


class BoundedSite(web.BaseSite):
    """A TCP site whose connections go through `gate`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate,
                 *, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port = host, port
        self._gate = gate

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        gate = self._gate
        keepalive = gate.limits.keepalive_s

        def connection() -> GuardedHandler:
            return GuardedHandler(server, gate, loop=loop, keepalive_timeout=keepalive)

        self._server = await loop.create_server(
            connection, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
