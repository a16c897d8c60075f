"""Webhook forwarder: POSTs each outbox row as JSON and deletes it only on a 2xx answer.

Rows go one at a time, in outbox order (alarms first), so a receiver sees each alert's
changes in order. `Idempotency-Key` carries the row's alert id and change: a receiver
that saw a row before a lost answer can drop the repeat. 401/403 is an auth failure (the
supervisor waits longest); any other non-2xx or no answer drops the link and retries
with backoff, the row staying in the outbox.
"""

from __future__ import annotations

import json
import logging

import aiohttp

from gateway.clock import Clock
from gateway.contract import Link
from gateway.errors import AuthError, DeliveryError, Unreachable
from gateway.forward.cursor import Delivered, Failed, OutboxCursor
from gateway.store import OutboxRow, Store

log = logging.getLogger("gateway.forward.webhook")

# Rows fetched per round; they are POSTed one after another, in order.
BATCH = 50


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
    ) -> None:
        self.name = f"forward:{target}"
        self.target = target
        self._url = url
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._cursor = OutboxCursor(
            store, target, clock=clock, on_delivered=on_delivered, on_failed=on_failed
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
            async with aiohttp.ClientSession(timeout=self._timeout, headers=headers) as session:
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
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._cursor.failed("unreachable")
            raise Unreachable(f"webhook {self.target}: {exc or type(exc).__name__}") from exc
        if status in (401, 403):
            self._cursor.failed("auth")
            raise AuthError(f"webhook {self.target}: HTTP {status}")
        if not 200 <= status < 300:
            self._cursor.failed("status")
            raise DeliveryError(f"webhook {self.target}: HTTP {status} for row {row.id}")
        self._cursor.delivered(row)
