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
import logging
from typing import Any

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

    def notify(self) -> None:
        """New rows were committed to the outbox."""
        self._cursor.notify()

    def in_flight(self) -> int:
        return len(self._cursor.in_flight)

    async def run(self, link: Link) -> None:
        self._cursor.link_lost()
        mqtt = MqttLink(self._options)
        waiting: set[asyncio.Future[None]] = set()
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
            await self._drain(mqtt, waiting)
        except Exception as exc:
            judged = self._takeover.judge(mqtt, exc)
            if judged is exc:
                raise
            raise judged from exc
        finally:
            for fut in waiting:
                fut.cancel()
            mqtt.close()
            self._cursor.link_lost()

    async def _drain(self, mqtt: MqttLink, waiting: set[asyncio.Future[None]]) -> None:
        while True:
            room = WINDOW - len(self._cursor.in_flight)
            rows = self._cursor.fetch(room)
            waiting.update(asyncio.ensure_future(self._publish(mqtt, row)) for row in rows)
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

    async def _publish(self, mqtt: MqttLink, row: OutboxRow) -> None:
        o = self._options
        try:
            async with asyncio.timeout(self._publish_timeout):
                reason = await mqtt.publish(row.topic, row.payload, qos=1, retain=row.retain)
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


def is_alarm_row(row: OutboxRow) -> bool:
    return row.lane == int(Lane.ALARM)
