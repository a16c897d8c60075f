"""A subscriber-only MQTT 3.1.1 session on an asyncio Protocol.

Why not the general client: paho (under aiomqtt) reads one packet per event-loop turn with
three recv() calls each; at 10,000 reports/s that put alarms ~150 ms behind the telemetry
queued in the socket (measured, docs/benchmarks.md). This session reads whatever the socket
holds and splits every complete frame at once, so a batch of reports costs one wake-up.
It keeps the connection's health itself: PINGREQ every keep-alive, and silence for 1.5 x
keep-alive (a half-open link: no RST, no FIN) closes it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from drivers.mqtt import wire
from gateway.errors import ProtocolError, Unreachable

# Pause reading the socket past this many undelivered messages; the broker then holds
# the rest (QoS 1 in its queue for this session), instead of this process's memory.
PAUSE_AT = 50_000
RESUME_AT = 10_000


class IngestSession(asyncio.Protocol):
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._splitter = wire.FrameSplitter()
        self.connack: asyncio.Future[int] = self._loop.create_future()
        self.suback: asyncio.Future[bytes] = self._loop.create_future()
        self._batches: deque[list[wire.Publish]] = deque()
        self._queued = 0
        self._paused = False
        self._ready = asyncio.Event()
        self._error: Exception | None = None
        self._ping_handle: asyncio.TimerHandle | None = None
        self.last_heard = self._loop.time()

    # ---- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_heard = self._loop.time()
        try:
            frames = self._splitter.feed(data)
            batch = [self._frame(kind, flags, body) for kind, flags, body in frames]
        except wire.WireError as exc:
            self.abort(ProtocolError(f"broker sent bad MQTT: {exc}"))
            return
        publishes = [p for p in batch if p is not None]
        if publishes:
            self._batches.append(publishes)
            self._queued += len(publishes)
            if self._queued >= PAUSE_AT and not self._paused and self._transport is not None:
                self._transport.pause_reading()
                self._paused = True
            self._ready.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(Unreachable(f"connection lost: {exc}" if exc else "connection closed"))

    def _frame(self, kind: int, flags: int, body: bytes) -> wire.Publish | None:
        if kind == wire.PUBLISH:
            return wire.parse_publish(flags, body)
        if kind == wire.CONNACK and len(body) == 2 and not self.connack.done():
            self.connack.set_result(body[1])
        elif kind == wire.SUBACK and len(body) >= 3 and not self.suback.done():
            self.suback.set_result(body[2:])
        elif kind != wire.PINGRESP:
            raise wire.WireError(f"unexpected packet type {kind:#04x}")
        return None

    # ---- the driver's side --------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(frame)

    async def next_batch(self) -> list[wire.Publish]:
        while not self._batches:
            if self._error is not None:
                raise self._error
            self._ready.clear()
            await self._ready.wait()
        batch = self._batches.popleft()
        self._queued -= len(batch)
        if self._paused and self._queued <= RESUME_AT and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False
        return batch

    def start_keepalive(self, keepalive_s: float) -> None:
        def check() -> None:
            silent = self._loop.time() - self.last_heard
            if silent > keepalive_s * 1.5:
                self.abort(Unreachable(
                    f"broker silent for {silent:.1f} s (keep-alive {keepalive_s:g} s): "
                    "half-open link"))
                return
            self.send(wire.PINGREQ_FRAME)
            self._ping_handle = self._loop.call_later(keepalive_s / 2, check)

        self._ping_handle = self._loop.call_later(keepalive_s / 2, check)

    def abort(self, error: Exception) -> None:
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._ping_handle is not None:
            self._ping_handle.cancel()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(wire.DISCONNECT_FRAME)
            self._transport.close()

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        if self._ping_handle is not None:
            self._ping_handle.cancel()
        for fut in (self.connack, self.suback):
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: the caller may already have given up on it
        self._ready.set()
