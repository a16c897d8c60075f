"""Webhook forwarder: POSTs each outbox row as JSON and deletes it only on a 2xx answer.

Rows go one at a time, in outbox order (alarms first), so a receiver sees each alert's
changes in order. `Idempotency-Key` carries the row's alert id and change: a receiver
that saw a row before a lost answer can drop the repeat. What an answer means:

- 2xx: delivered, the row is deleted.
- 401/403: the link's credentials are refused (the supervisor waits longest); the row stays.
- 408, 429, 5xx, no answer: not now; the link drops and retries with backoff, the row stays.
- any other 4xx: this row is refused for good (a 400 or 422 would come back the same
  however often it is sent). It moves to the dead letters (`outbox_dead`, logged once,
  counted, listed on `/api/outbox/dead`) and the rows after it keep flowing: one poison
  row must not hold every later alarm for that target.

Every failed attempt adds one to the row's `attempts`.
"""

from __future__ import annotations

import json
import logging

import aiohttp

from gateway.clock import Clock
from gateway.contract import Link
from gateway.errors import AuthError, DeliveryError, Unreachable
from gateway.forward.cursor import DeadLettered, Delivered, Failed, OutboxCursor
from gateway.mqtt_loop import Tls, tls_context
from gateway.store import OutboxRow, Store

log = logging.getLogger("gateway.forward.webhook")

# Rows fetched per round; they are POSTed one after another, in order.
BATCH = 50
AUTH_REFUSED = frozenset({401, 403})
# Client errors that say "not now" rather than "never": timeout and rate limit.
RETRYABLE_4XX = frozenset({408, 429})
# Enough of a refusal's body for the operator to see why; it goes to the store only.
REASON_BYTES = 200


def is_permanent_refusal(status: int) -> bool:
    """A 4xx that would come back the same for this row however often it is sent."""
    return 400 <= status < 500 and status not in AUTH_REFUSED | RETRYABLE_4XX


def idempotency_key(row: OutboxRow) -> str:
    try:
        doc = json.loads(row.payload)
        return f"{doc['alert']['id']}:{doc['change']}"
    except (ValueError, KeyError, TypeError):
        return f"outbox-{row.id}"


class WebhookForwarder:
    def __init__(
        self,
        target: str,
        *,
        url: str,
        store: Store,
        token: str | None = None,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
        on_delivered: Delivered | None = None,
        on_failed: Failed | None = None,
        on_dead: DeadLettered | None = None,
        tls: Tls | None = None,
    ) -> None:
        self.name = f"forward:{target}"
        self._ssl = tls_context(tls) if tls is not None else None
        self.target = target
        self._url = url
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._cursor = OutboxCursor(
            store, target, clock=clock, on_delivered=on_delivered, on_failed=on_failed,
            on_dead=on_dead,
        )

    def notify(self) -> None:
        """New rows were committed to the outbox."""
        self._cursor.notify()

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"WebhookForwarder({self.target}, {self._url})"

    async def run(self, link: Link) -> None:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
            async with aiohttp.ClientSession(timeout=self._timeout, headers=headers,
                                             connector=connector) as session:
                await self._drain(session, link)
        finally:
            self._cursor.link_lost()

    async def _drain(self, session: aiohttp.ClientSession, link: Link) -> None:
        announced = False
        while True:
            rows = self._cursor.fetch(BATCH)
            for row in rows:
                await self._post(session, row)
                if not announced:
                    link.up()
                    announced = True
            if not rows:
                if not announced:
                    link.up()  # nothing to send yet; the first failure will say otherwise
                    announced = True
                await self._cursor.wait()

    async def _post(self, session: aiohttp.ClientSession, row: OutboxRow) -> None:
        try:
            async with session.post(
                self._url, data=row.payload,
                headers={"Idempotency-Key": idempotency_key(row), "X-Gateway-Topic": row.topic},
            ) as response:
                status = response.status
                reason = ""
                if is_permanent_refusal(status):
                    reason = await _refusal(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._cursor.failed("unreachable", row)
            raise Unreachable(f"webhook {self.target}: {exc or type(exc).__name__}") from exc
        if 200 <= status < 300:
            self._cursor.delivered(row)
            return
        if status in AUTH_REFUSED:
            self._cursor.failed("auth", row)
            raise AuthError(f"webhook {self.target}: HTTP {status}")
        if is_permanent_refusal(status):
            log.warning(
                "outbox row dead-lettered target=%s row=%d status=%d lane=%d topic=%s"
                " attempts=%d", self.target, row.id, status, row.lane, row.topic,
                row.attempts + 1,
            )
            self._cursor.dead(row, status, reason)
            return
        self._cursor.failed("status", row)
        raise DeliveryError(f"webhook {self.target}: HTTP {status} for row {row.id}")


async def _refusal(response: aiohttp.ClientResponse) -> str:
    """`HTTP 422 Unprocessable Entity: <start of the body>`, on one line."""
    head = f"HTTP {response.status} {response.reason or ''}".rstrip()
    try:
        body = await response.content.read(REASON_BYTES)
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    text = " ".join(body.decode("utf-8", "replace").split())
    return f"{head}: {text}" if text else head
