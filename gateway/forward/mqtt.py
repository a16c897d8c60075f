"""MQTT forwarder: publishes outbox rows with QoS 1 and deletes a row only on its PUBACK.

Delivery states of a row: `stored` (in the table) -> `in_flight` (handed to the broker
connection, held in memory here) -> `acked` (PUBACK received; the delete is committed).
When the connection drops, every in-flight row simply returns to `stored` (it never left
the table) and is sent again on the next connection: at least once, receivers dedupe on
the alert id. A publish not acknowledged within `publish_timeout_s` drops the
connection: with keep-alive this finds a half-open link (no RST) in seconds.
"""

from __future__ import annotations

import asyncio
import logging

import aiomqtt

from gateway.clock import Clock
from gateway.contract import Link
from gateway.errors import DeliveryError, Unreachable
from gateway.events import Lane
from gateway.forward.cursor import Delivered, Failed, OutboxCursor
from gateway.store import OutboxRow, Store

log = logging.getLogger("gateway.forward.mqtt")

# How many rows may wait for their PUBACK at once. paho sends them as a window; a larger
# window drains a backlog after an outage faster, at the cost of more duplicates on a drop.
WINDOW = 200


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
        keepalive_s: int = 12,
        publish_timeout_s: float = 5.0,
        client_id: str | None = None,
        clock: Clock | None = None,
        on_delivered: Delivered | None = None,
        on_failed: Failed | None = None,
    ) -> None:
        self.name = f"forward:{target}"
        self.target = target
        self._host, self._port = host, port
        self._username, self._password = username, password
        self._keepalive = keepalive_s
        self._publish_timeout = publish_timeout_s
        self._client_id = client_id
        self._cursor = OutboxCursor(
            store, target, clock=clock, on_delivered=on_delivered, on_failed=on_failed
        )

    def notify(self) -> None:
        """New rows were committed to the outbox."""
        self._cursor.notify()

    def in_flight(self) -> int:
        return len(self._cursor.in_flight)

    async def run(self, link: Link) -> None:
        self._cursor.link_lost()
        try:
            async with aiomqtt.Client(
                self._host,
                self._port,
                username=self._username,
                password=self._password,
                identifier=self._client_id,
                keepalive=self._keepalive,
                clean_session=True,
                timeout=self._publish_timeout,
                max_inflight_messages=WINDOW,
            ) as client:
                link.up()
                async with asyncio.TaskGroup() as tg:
                    await self._drain(client, tg)
        except aiomqtt.MqttError as exc:
            raise Unreachable(f"broker {self._host}:{self._port}: {exc}") from exc
        except BaseExceptionGroup as group:
            first = _first_leaf(group)
            if isinstance(first, DeliveryError | aiomqtt.MqttError):
                raise DeliveryError(str(first)) from first
            raise
        finally:
            self._cursor.link_lost()

    async def _drain(self, client: aiomqtt.Client, tg: asyncio.TaskGroup) -> None:
        while True:
            room = WINDOW - len(self._cursor.in_flight)
            rows = self._cursor.fetch(room)
            for row in rows:
                tg.create_task(self._publish(client, row), name=f"publish-{row.id}")
            if not rows or room <= len(rows):
                await self._cursor.wait()  # new rows, or acks that free the window

    async def _publish(self, client: aiomqtt.Client, row: OutboxRow) -> None:
        try:
            await client.publish(
                row.topic, row.payload, qos=1, retain=row.retain, timeout=self._publish_timeout
            )
        except aiomqtt.MqttError as exc:
            self._cursor.failed("timeout" if "timed out" in str(exc).lower() else "publish")
            raise DeliveryError(
                f"row {row.id} to {self._host}:{self._port} not acknowledged: {exc}"
            ) from exc
        self._cursor.delivered(row)


def is_alarm_row(row: OutboxRow) -> bool:
    return row.lane == int(Lane.ALARM)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
