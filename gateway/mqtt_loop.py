"""paho-mqtt on the asyncio event loop: the one MQTT stack of the daemon and its simulators.

paho does the protocol: sessions, QoS, MQTT 5 reason codes, TLS, manual acknowledgement.
This module only wires paho's socket into the running loop (paho's external-loop API) and
turns its callbacks into futures:

- The socket's reader calls `loop_read()` until a call brings nothing new. Each call reads
  one packet: in paho 2.1 and 2.2 `loop_read(max_packets=...)` ignores its argument. At most
  `READ_BURST` calls per wake-up, so one busy link never starves the loop.
- A writer is registered only while paho has bytes queued.
- A timer calls `loop_misc()` (paho's PINGREQ) and drops a link that has been silent for
  1.5 x keep-alive: a half-open link (no RST, no FIN) shows as down in seconds.
- `connect()` runs paho's blocking TCP (and TLS) connect in a worker thread; the loop owns
  the socket from the moment it returns.
- TCP_NODELAY on every socket: an alarm is one small packet and must not wait for Nagle.
- Reads are buffered (`BufferedClient`): paho asks the socket for 1 byte, 1 byte, then the
  rest of every packet, three `recv()` system calls a packet; here one `recv()` of up to
  `RECV_CHUNK` bytes serves many packets. The only paho internal this touches is
  `_sock_recv`, the one method through which paho 2.2 reads its socket (pinned).
- Every message paho reads carries an `MQTTMessageInfo`, whose `threading.Condition`
  (only ever used to wait for one's own publish) cost an eighth of the ingest's CPU.
  `LazyMessageInfo` makes that condition on first use instead; paho builds its messages
  with it (it looks the class up in its module at each message).

Back-pressure: past `PAUSE_AT` undelivered messages the reader is removed and the broker
holds the rest (QoS 1 in the session's queue), not this process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.errors import AuthError, ProtocolError, SessionTakenOver, Unreachable

log = logging.getLogger("gateway.mqtt")

READ_BURST = 256
RECV_CHUNK = 65536
PAUSE_AT = 20_000
RESUME_AT = 5_000
SILENCE_FACTOR = 1.5

# MQTT 5 reason codes the gateway acts on (paho maps 3.1.1 CONNACK codes onto these).
UNSUPPORTED_PROTOCOL = 0x84
BAD_CREDENTIALS = 0x86
NOT_AUTHORISED = 0x87
SESSION_TAKEN_OVER = 0x8E

Message = paho.MQTTMessage


class ProtocolRefused(Unreachable):
    """The broker does not speak the MQTT version asked for."""


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS on a broker link: the CA that signs the broker, and our client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class LinkOptions:
    host: str
    port: int
    client_id: str
    keepalive_s: float = 12
    username: str | None = None
    password: str | None = None
    tls: Tls | None = None
    protocol: Literal[4, 5] = 5
    # False: a persistent session (the broker queues QoS 1 for us while we are away).
    clean_start: bool = True
    # MQTT 5: how long the broker keeps a persistent session after the link drops.
    session_expiry_s: int = 0
    # True: every QoS 1 message stays unacknowledged until `ack()` (after commit).
    manual_ack: bool = False
    max_inflight: int = 20
    connect_timeout_s: float = 10.0
    # False: paho's own unbuffered reads (three system calls a packet); for comparison.
    buffered_reads: bool = True

    def __repr__(self) -> str:  # never let a password reach a log line
        return f"LinkOptions({self.host}:{self.port}, id={self.client_id!r})"


_CONDITION_LOCK = threading.Lock()


class LazyMessageInfo(paho.MQTTMessageInfo):
    """paho's `MQTTMessageInfo` with its condition made when something first waits on it
    or notifies it: received messages, nearly all of them, never do."""

    __slots__ = ()

    def __init__(self, mid: int) -> None:  # paho's fields, less the condition
        self.mid = mid
        self._published = False
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def __getattr__(self, name: str) -> Any:  # only for a slot not yet set
        if name != "_condition":
            raise AttributeError(name)
        with _CONDITION_LOCK:  # paho's publishers may be other threads: make it once
            try:
                return object.__getattribute__(self, "_condition")
            except AttributeError:
                condition = threading.Condition()
                self._condition = condition
                return condition


PAHO_MESSAGE_INFO = paho.MQTTMessageInfo  # paho's own, for the benchmark's comparison
paho.MQTTMessageInfo = LazyMessageInfo  # type: ignore[misc]


class BufferedClient(paho.Client):
    """paho whose socket reads come from one buffer, refilled by a single `recv()`, and
    whose received messages go straight to `on_message` (below).

    It hands paho exactly the bytes paho asked for, in order, so paho's framing, QoS and
    session logic see the same stream; only the number of system calls changes. `b""`
    (the peer closed) and `BlockingIOError` (nothing more yet) still reach paho only once
    the buffer is empty. `buffered` tells the loop that bytes wait here, not in the
    kernel, so the socket will not wake the reader for them."""

    _rdata: bytes = b""
    _rpos: int = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        data, pos = self._rdata, self._rpos
        if pos >= len(data):
            data = super()._sock_recv(RECV_CHUNK)
            if len(data) <= bufsize:  # the whole read is what paho asked for (or EOF)
                self._rdata, self._rpos = b"", 0
                return data
            pos = 0
            self._rdata = data
        end = pos + bufsize
        if end >= len(data):  # the rest of the buffer (perhaps less than asked: as recv)
            self._rdata, self._rpos = b"", 0
            return data[pos:]
        self._rpos = end
        return data[pos:end]

    @property
    def buffered(self) -> int:
        return len(self._rdata) - self._rpos

    # paho looks every received message up in its per-topic callback tree, under a lock,
    # before it calls `on_message` under another. The links here add no per-topic
    # callbacks, so a message goes straight to `on_message`; one that does add some gets
    # paho's own dispatch back.
    _filtered: bool = False

    def message_callback_add(self, sub: str, callback: Any) -> None:
        self._filtered = True
        super().message_callback_add(sub, callback)

    def _handle_on_message(self, message: Message) -> None:
        on_message = self.on_message
        if self._filtered or on_message is None:
            super()._handle_on_message(message)
            return
        with self._in_callback_mutex:
            on_message(self, self._userdata, message)


class MqttLink:
    """One paho client, on the running event loop, for one connection.

    Build one per connection attempt: `await connect()`, use it, then `close()`. `lost`
    resolves (with the reason) when the connection ends for any cause.
    """

    def __init__(self, options: LinkOptions) -> None:
        self.options = options
        self._loop = asyncio.get_running_loop()
        v5 = options.protocol == 5
        make = BufferedClient if options.buffered_reads else paho.Client
        self.client = make(
            CallbackAPIVersion.VERSION2,
            client_id=options.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else options.clean_start,
            manual_ack=options.manual_ack,
        )
        c = self.client
        c.max_inflight_messages_set(options.max_inflight)
        c.max_queued_messages_set(0)
        if options.username is not None:
            c.username_pw_set(options.username, options.password)
        if options.tls is not None:
            c.tls_set_context(tls_context(options.tls))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        self.inbox: list[Message] = []
        self.lost: asyncio.Future[Exception] = self._loop.create_future()
        self.session_present = False
        self.last_heard = self._loop.time()
        self._heard = 0  # callbacks fired: the reader's "something new arrived"
        self._connack: asyncio.Future[bool] = self._loop.create_future()
        self._subacks: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._pubacks: dict[int, asyncio.Future[ReasonCode]] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._sock: Any = None
        self._paused = False
        self._misc: asyncio.TimerHandle | None = None
        self._closed = False
        self.connected_at: float | None = None
        # True when the broker (or the network) ended the link, not this side.
        self.dropped_by_peer = False
        self._lost_at: float | None = None

    # ---- the connection -----------------------------------------------------------------
    async def connect(self) -> bool:
        """Connect and wait for a successful CONNACK; returns the session-present flag.

        Raises AuthError (bad credentials, not authorised), Unreachable (no TCP, TLS
        refused, broker refused, no CONNACK in time)."""
        o = self.options
        where = f"broker {o.host}:{o.port}"
        opening = self._loop.run_in_executor(None, self._blocking_connect)
        try:
            async with asyncio.timeout(o.connect_timeout_s):
                await asyncio.shield(opening)
        except BaseException as exc:
            # The worker thread may still finish connecting: close what it opens.
            opening.add_done_callback(lambda _f: self.close())
            if isinstance(exc, TimeoutError):
                raise Unreachable(f"{where}: connect timed out") from None
            if isinstance(exc, ssl.SSLError | ssl.CertificateError):
                raise Unreachable(f"{where}: TLS: {exc}") from exc
            if isinstance(exc, OSError):
                raise Unreachable(f"{where}: {exc}") from exc
            raise
        self._attach()
        try:
            async with asyncio.timeout(o.connect_timeout_s):
                waits: list[asyncio.Future[Any]] = [self._connack, self.lost]
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self.close()
            raise
        if not done:
            self.close()
            raise Unreachable(f"{where}: no CONNACK")
        if self._connack not in done:
            self.close()
            raise self.lost.result()
        try:
            self.session_present = self._connack.result()
        except BaseException:
            self.close()
            raise
        self.connected_at = self._loop.time()
        return self.session_present

    def up_for(self) -> float:
        """How long the link had been connected (until now, or until it was lost)."""
        if self.connected_at is None:
            return 0.0
        return (self._lost_at or self._loop.time()) - self.connected_at

    def _blocking_connect(self) -> None:
        o = self.options
        properties = None
        if o.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if o.session_expiry_s:
                properties.SessionExpiryInterval = o.session_expiry_s
            self.client.connect(o.host, o.port, int(o.keepalive_s), clean_start=o.clean_start,
                                properties=properties)
        else:
            self.client.connect(o.host, o.port, int(o.keepalive_s))

    def _attach(self) -> None:
        """Hand paho's socket to the loop."""
        sock = self.client.socket()
        if sock is None:
            raise Unreachable(f"broker {self.options.host}:{self.options.port}: no socket")
        self._sock = sock
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
        c = self.client
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        self._loop.add_reader(sock, self._on_readable)
        if c.want_write():
            self._loop.add_writer(sock, self._on_writable)
        self.last_heard = self._loop.time()
        self._schedule_misc()

    def _schedule_misc(self) -> None:
        interval = max(0.05, min(1.0, self.options.keepalive_s / 4))
        self._misc = self._loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        if self._closed:
            return
        silent = self._loop.time() - self.last_heard
        limit = SILENCE_FACTOR * self.options.keepalive_s
        if not self._paused and silent > limit:
            self._fail(Unreachable(
                f"broker {self.options.host}:{self.options.port} silent for {silent:.1f} s "
                f"(keep-alive {self.options.keepalive_s:g} s): half-open link"))
            return
        try:
            rc = self.client.loop_misc()
        except Exception as exc:  # the timer must never die silently: end the link instead
            self._fail(ProtocolError(f"keep-alive failed: {exc!r}"))
            return
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            if not self.lost.done():
                self._fail(Unreachable(f"connection lost: {paho.error_string(rc)}"))
            return
        self._schedule_misc()

    # ---- reading and writing (the loop's callbacks) -------------------------------------
    def _on_readable(self) -> None:
        self.last_heard = self._loop.time()
        before_inbox = len(self.inbox)
        client = self.client
        try:
            for _ in range(READ_BURST):
                before = self._heard
                rc = client.loop_read()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    if not self.lost.done():
                        self.dropped_by_peer = True
                        self._fail(Unreachable(f"connection lost: {paho.error_string(rc)}"))
                    return
                if self._heard == before or self._closed:
                    break
        except Exception as exc:  # a bug in a callback must end this link, not the loop
            log.exception("event=mqtt_read_failed link=%s", self.options.client_id)
            self._fail(ProtocolError(f"reading from the broker failed: {exc!r}"))
            return
        if self._unread():
            # Bytes wait in a buffer (ours, or TLS's), not in the kernel: the socket will not
            # wake the reader for them.
            self._loop.call_soon(self._on_readable_again)
        if len(self.inbox) != before_inbox:
            self._wake()
            if len(self.inbox) >= PAUSE_AT and not self._paused and self._sock is not None:
                self._loop.remove_reader(self._sock)
                self._paused = True

    def _unread(self) -> bool:
        client = self.client
        if isinstance(client, BufferedClient) and client.buffered:
            return True
        return isinstance(self._sock, ssl.SSLSocket) and self._sock.pending() > 0

    def _on_readable_again(self) -> None:
        if not self._closed and not self._paused and not self.lost.done():
            self._on_readable()

    def _on_writable(self) -> None:
        try:
            rc = self.client.loop_write()
        except Exception as exc:
            self._fail(ProtocolError(f"writing to the broker failed: {exc!r}"))
            return
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not self.lost.done():
            self._fail(Unreachable(f"connection lost: {paho.error_string(rc)}"))

    def _on_register_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        if not self._closed and not self.lost.done():
            with contextlib.suppress(ValueError, OSError):  # a socket paho just closed
                self._loop.add_writer(sock, self._on_writable)

    def _on_unregister_write(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _on_socket_close(self, _c: paho.Client, _u: Any, sock: Any) -> None:
        with contextlib.suppress(ValueError, OSError):  # already closed by `close()`
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        # paho tells why (on_disconnect, e.g. a session taken over) just after closing.
        self._loop.call_soon(self._closed_by_paho)

    def _closed_by_paho(self) -> None:
        if not self.lost.done():
            self.dropped_by_peer = True
            self._fail(Unreachable("connection closed"))

    # ---- paho's callbacks ---------------------------------------------------------------
    def _on_connect(self, _c: paho.Client, _u: Any, flags: paho.ConnectFlags,
                    reason: ReasonCode, _p: Properties | None) -> None:
        self._heard += 1
        if self._connack.done():
            return
        o = self.options
        if reason.is_failure:
            if reason.value == UNSUPPORTED_PROTOCOL:
                self._connack.set_exception(ProtocolRefused(
                    f"broker {o.host}:{o.port} refused MQTT {'5' if o.protocol == 5 else '3.1.1'}"))
            elif reason.value in (BAD_CREDENTIALS, NOT_AUTHORISED):
                self._connack.set_exception(AuthError(f"broker {o.host}:{o.port}: {reason}"))
            else:
                self._connack.set_exception(
                    Unreachable(f"broker {o.host}:{o.port} refused: {reason}"))
        else:
            self._connack.set_result(bool(flags.session_present))

    def _on_disconnect(self, _c: paho.Client, _u: Any, _f: paho.DisconnectFlags,
                       reason: ReasonCode, _p: Properties | None) -> None:
        self._heard += 1
        if self.lost.done():
            return
        self.dropped_by_peer = True
        if reason.value == SESSION_TAKEN_OVER:
            self._fail(SessionTakenOver(
                f"broker {self.options.host}:{self.options.port}: another client took over "
                f"the session of {self.options.client_id!r}"))
        else:
            self._fail(Unreachable(f"disconnected: {reason}"))

    def _on_message(self, _c: paho.Client, _u: Any, message: Message) -> None:
        self._heard += 1
        self.inbox.append(message)

    def _on_publish(self, _c: paho.Client, _u: Any, mid: int, reason: ReasonCode,
                    _p: Properties) -> None:
        self._heard += 1
        fut = self._pubacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(reason)

    def _on_subscribe(self, _c: paho.Client, _u: Any, mid: int, reasons: list[ReasonCode],
                      _p: Properties) -> None:
        self._heard += 1
        fut = self._subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(list(reasons))

    # ---- what the drivers call ----------------------------------------------------------
    async def subscribe(self, filters: Iterable[tuple[str, int]], timeout_s: float = 10.0,
                        ) -> list[ReasonCode]:
        """Subscribe and return the broker's grant per filter (QoS, or a failure code)."""
        wanted = list(filters)
        rc, mid = self.client.subscribe(wanted)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise Unreachable(f"subscribe failed: {paho.error_string(rc)}")
        fut: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        self._subacks[mid] = fut
        granted: list[ReasonCode] = await self._answer(fut, timeout_s, "SUBACK")
        return granted

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
                ) -> asyncio.Future[ReasonCode]:
        """Queue a publish; the future resolves with the PUBACK's reason code (QoS 1), or
        once written (QoS 0). It fails when the connection drops first."""
        fut: asyncio.Future[ReasonCode] = self._loop.create_future()
        if self.lost.done():
            fut.set_exception(self.lost.result())
            return fut
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_QUEUE_SIZE):
            fut.set_exception(Unreachable(f"publish failed: {paho.error_string(info.rc)}"))
        elif info.is_published():
            fut.set_result(ReasonCode(PacketTypes.PUBACK))
        else:
            self._pubacks[info.mid] = fut
        return fut

    def flush(self) -> None:
        """Write what paho holds for the socket now, not on the loop's next turn (for
        alarms: a burst of routine publishes is better written once per turn)."""
        if self._sock is not None and not self._closed and not self.lost.done():
            self._on_writable()

    def publish_nowait(self, topic: str, payload: bytes, qos: int = 0,
                       retain: bool = False) -> None:
        """Queue a publish and do not wait for it (routine telemetry of a simulator)."""
        if not self.lost.done():
            self.client.publish(topic, payload, qos=qos, retain=retain)

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message received with `manual_ack` (after its commit)."""
        if qos and not self.lost.done():
            self.client.ack(mid, qos)

    def take(self) -> list[Message]:
        """Every message received so far, in arrival order."""
        batch, self.inbox = self.inbox, []
        if self._paused and self._sock is not None and not self._closed:
            self._paused = False
            self.last_heard = self._loop.time()
            self._loop.add_reader(self._sock, self._on_readable)
            if self._unread():
                self._loop.call_soon(self._on_readable_again)
        return batch

    async def next_batch(self) -> list[Message]:
        """Wait for messages (or the end of the link: then its reason is raised)."""
        while not self.inbox:
            if self.lost.done():
                raise self.lost.result()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.take()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def queued(self) -> int:
        return len(self.inbox)

    async def disconnect(self, timeout_s: float = 2.0) -> None:
        """Say goodbye (a DISCONNECT), then close. A persistent session stays on the broker."""
        if not self.lost.done() and not self._closed:
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self.lost)
        self.close()

    def close(self) -> None:
        """Drop the connection at once (no DISCONNECT). Safe to call more than once."""
        if self._misc is not None:
            self._misc.cancel()
        sock, self._sock = self._sock, None
        if sock is None:
            sock = self.client.socket()
        self._closed = True
        c = self.client
        c.on_socket_close = c.on_socket_register_write = c.on_socket_unregister_write = None
        if sock is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
            with contextlib.suppress(OSError):
                sock.close()
        if not self.lost.done():
            self._fail(Unreachable("closed"))

    def _fail(self, error: Exception) -> None:
        if not self.lost.done():
            self._lost_at = self._loop.time()
            self.lost.set_result(error)
        pending: list[asyncio.Future[Any]] = [*self._pubacks.values(), *self._subacks.values()]
        self._pubacks.clear()
        self._subacks.clear()
        for fut in pending:
            if not fut.done():
                fut.set_exception(error)
                fut.exception()  # retrieved: the caller may have stopped waiting
        if not self._connack.done():
            self._connack.set_exception(error)
            self._connack.exception()
        self._wake()
        if not self._closed:
            self.close()

    async def _answer(self, fut: asyncio.Future[Any], timeout_s: float, what: str) -> Any:
        try:
            async with asyncio.timeout(timeout_s):
                waits: list[asyncio.Future[Any]] = [fut, self.lost]
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise Unreachable(f"no {what} within {timeout_s:g} s") from None
        if fut in done:
            return fut.result()
        raise self.lost.result()


class TakeoverWatch:
    """Tells a session taken over from a plain drop where the broker does not say so.

    An MQTT 5 broker says "session taken over" (0x8E); older ones (mosquitto before
    2.0.15) just close the link. Two links in a row that the broker closed within
    `window_s` of connecting mean another client is using this client id: retrying at
    once would only make the two take the session from each other in turn.
    """

    def __init__(self, client_id: str, window_s: float = 10.0) -> None:
        self.client_id = client_id
        self.window_s = window_s
        self._short_drops = 0

    def judge(self, link: MqttLink, error: Exception) -> Exception:
        if isinstance(error, SessionTakenOver):
            self._short_drops = 0
            return error
        if link.connected_at is None:
            return error  # never connected: not a takeover
        if link.dropped_by_peer and link.up_for() < self.window_s:
            self._short_drops += 1
        else:
            self._short_drops = 0
        if self._short_drops >= 2:
            self._short_drops = 0
            return SessionTakenOver(
                f"the broker closed the link twice in a row within {self.window_s:g} s of "
                f"connecting: another client probably took over the session of "
                f"{self.client_id!r}")
        return error


def tls_context(tls: Tls) -> ssl.SSLContext:
    """A client TLS context: the broker's (or webhook's) certificate checked against the
    CA file (or the system's CAs), and our certificate where one is given."""
    ctx = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file is not None:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    return ctx


def is_refusal(reason: ReasonCode) -> bool:
    """A PUBACK (MQTT 5) that means the broker did not take the message: 0x80 and above."""
    return bool(reason.is_failure)


LinkFactory = Callable[[LinkOptions], MqttLink]
