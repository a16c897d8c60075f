"""MQTT forwarder: publishes outbox rows with QoS 1 over MQTT 5 and deletes a row only on
a PUBACK that says the broker took it.

Delivery states of a row: `stored` (in the table) -> `in_flight` (handed to the broker
connection, held in memory here) -> `acked` (a successful PUBACK; the delete is
committed). When the connection drops, every in-flight row simply returns to `stored`
(it never left the table) and is sent again on the next connection: at least once,
receivers dedupe on the alert id.

- A PUBACK with a reason code of 0x80 or above (an ACL refusal, a quota) is a failed
  delivery: the row stays, its attempts grow, and it is tried again later while the
  rows behind it go on.
- A publish not acknowledged within `publish_timeout_s` drops the connection; so does
  1.5 x keep-alive of silence on an idle link: a half-open link (no RST) shows in seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import Any

from paho.mqtt.reasoncodes import ReasonCode

from gateway import trace
from gateway.clock import Clock
from gateway.contract import Link
from gateway.errors import DeliveryError
from gateway.events import Lane
from gateway.forward.cursor import Delivered, Failed, OutboxCursor
from gateway.mqtt_loop import (
    LinkOptions,
    MqttLink,
    ProtocolRefused,
    TakeoverWatch,
    Tls,
    is_refusal,
)
from gateway.store import OutboxRow, Store

log = logging.getLogger("gateway.forward.mqtt")

# How many rows may wait for their PUBACK at once. A larger window drains a backlog after
# an outage faster, at the cost of more duplicates on a drop.
WINDOW = 200
# A row the broker refused is tried again after this long.
REFUSED_RETRY_S = 30.0


class MqttForwarder:
    def __init__(
        self,
        target: str,
        *,
        host: str,
        port: int,
        store: Store,
        username: str | None = None,
        password: str | None = None,
        keepalive_s: float = 12,
        publish_timeout_s: float = 5.0,
        client_id: str | None = None,
        tls: Tls | None = None,
        clock: Clock | None = None,
        on_delivered: Delivered | None = None,
        on_failed: Failed | None = None,
    ) -> None:
        self.name = f"forward:{target}"
        self.target = target
        self._options = LinkOptions(
            host, port, client_id or f"gw-forward-{target}", keepalive_s=keepalive_s,
            username=username, password=password, tls=tls, protocol=5, clean_start=True,
            max_inflight=WINDOW,
        )
        self._publish_timeout = publish_timeout_s
        self._cursor = OutboxCursor(
            store, target, clock=clock, on_delivered=on_delivered, on_failed=on_failed
        )
        self._refusals_logged: set[int] = set()
        self._takeover = TakeoverWatch(self._options.client_id)
        # The link while it is up, and its publishes waiting for their PUBACK.
        self._live: MqttLink | None = None
        self._waiting: set[asyncio.Future[None]] = set()

    def notify(self) -> None:
        """New rows were committed to the outbox: while the link is up they go out now,
        from this call, instead of after the drain task's next turns of the loop (each
        turn, under a telemetry load, is the whole of the loop's other work)."""
        mqtt = self._live
        if mqtt is not None and not mqtt.lost.done():
            self._send_rows(mqtt)
        # After the send (whose fetch clears it): the drain task wakes and waits on the new
        # publishes too, so one that fails ends the link at once.
        self._cursor.notify()

    def in_flight(self) -> int:
        return len(self._cursor.in_flight)

    async def run(self, link: Link) -> None:
        self._cursor.link_lost()
        mqtt = MqttLink(self._options)
        waiting = self._waiting = set()
        try:
            try:
                await mqtt.connect()
            except ProtocolRefused:
                if self._options.protocol != 5:
                    raise
                # An MQTT 3.1.1-only broker (the embedded demo broker): deliver anyway,
                # without the PUBACK reason codes that tell a refusal from a delivery.
                log.warning("target=%s broker %s:%s speaks MQTT 3.1.1 only: a refused "
                            "publish cannot be told from a delivered one on it",
                            self.target, self._options.host, self._options.port)
                self._options = dataclasses.replace(self._options, protocol=4)
                mqtt = MqttLink(self._options)
                await mqtt.connect()
            link.up()
            self._live = mqtt
            await self._drain(mqtt, waiting)
        except Exception as exc:
            judged = self._takeover.judge(mqtt, exc)
            if judged is exc:
                raise
            raise judged from exc
        finally:
            self._live = None
            for fut in waiting:
                fut.cancel()
            mqtt.close()
            self._cursor.link_lost()

    async def _drain(self, mqtt: MqttLink, waiting: set[asyncio.Future[None]]) -> None:
        while True:
            room = WINDOW - len(self._cursor.in_flight)
            rows = self._send_rows(mqtt)
            _reap(waiting)
            if mqtt.lost.done():
                raise mqtt.lost.result()
            if not rows or room <= len(rows):
                await self._wait(mqtt, waiting)

    async def _wait(self, mqtt: MqttLink, waiting: set[asyncio.Future[None]]) -> None:
        """Until new rows, a freed window, a failed publish, or the link's end."""
        wake = asyncio.ensure_future(self._cursor.wait())
        try:
            waits: list[asyncio.Future[Any]] = [wake, mqtt.lost, *waiting]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
        _reap(waiting)
        if mqtt.lost.done():
            raise mqtt.lost.result()

    def _send_rows(self, mqtt: MqttLink) -> list[OutboxRow]:
        """Fetch what the window has room for and hand it to the socket now."""
        rows = self._cursor.fetch(WINDOW - len(self._cursor.in_flight))
        if rows:
            for row in rows:
                traced = _traced_alert(row) if trace.ON else None
                if traced is not None:
                    trace.alert_stage(traced, "fetched")
                reply = mqtt.publish(row.topic, row.payload, qos=1, retain=row.retain)
                reply.add_done_callback(_retrieved)  # its settle may be cancelled unstarted
                self._waiting.add(asyncio.ensure_future(self._settle(row, reply, traced)))
            mqtt.flush()
        return rows

    async def _settle(self, row: OutboxRow, reply: asyncio.Future[ReasonCode],
                      traced: str | None) -> None:
        o = self._options
        try:
            async with asyncio.timeout(self._publish_timeout):
                reason = await reply
            if traced is not None:
                trace.alert_stage(traced, "acked")
        except TimeoutError:
            self._cursor.failed("timeout")
            raise DeliveryError(
                f"row {row.id} to {o.host}:{o.port} not acknowledged within "
                f"{self._publish_timeout:g} s") from None
        except Exception as exc:
            self._cursor.failed("publish")
            raise DeliveryError(
                f"row {row.id} to {o.host}:{o.port} not acknowledged: {exc}") from exc
        if is_refusal(reason):
            if reason.value not in self._refusals_logged:
                self._refusals_logged.add(reason.value)
                log.warning("target=%s broker refused a publish on %s: %s (0x%02x); the row "
                            "stays and is tried again in %g s (further refusals of this "
                            "kind are only counted)", self.target, row.topic, reason,
                            reason.value, REFUSED_RETRY_S)
            self._cursor.refused(row, "refused", REFUSED_RETRY_S)
            return
        self._cursor.delivered(row)


def _reap(waiting: set[asyncio.Future[None]]) -> None:
    """Forget finished publishes; the first that failed ends the link (the others are
    cancelled: their rows are still in the outbox)."""
    for fut in [f for f in waiting if f.done()]:
        waiting.discard(fut)
        error = fut.exception()
        if error is not None:
            for other in waiting:
                other.cancel()
            raise error


def _retrieved(reply: asyncio.Future[ReasonCode]) -> None:
    if not reply.cancelled():
        reply.exception()


def _traced_alert(row: OutboxRow) -> str | None:
    if not is_alarm_row(row):
        return None
    try:
        doc = json.loads(row.payload)
        return str(doc["alert"]["id"])
    except (ValueError, KeyError, TypeError):
        return None


def is_alarm_row(row: OutboxRow) -> bool:
    return row.lane == int(Lane.ALARM)
