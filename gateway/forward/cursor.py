"""One forwarding target's view of the outbox: which rows it may fetch now, the
bookkeeping of a delivered row until its delete is committed, and reporting each
delivery and failure (metrics)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from gateway.clock import Clock, SystemClock
from gateway.store import OutboxRow, Store, WriteBatch

Delivered = Callable[[OutboxRow, float], None]
Failed = Callable[[str], None]


class OutboxCursor:
    def __init__(
        self,
        store: Store,
        target: str,
        *,
        clock: Clock | None = None,
        on_delivered: Delivered | None = None,
        on_failed: Failed | None = None,
    ) -> None:
        self._store = store
        self._target = target
        self._clock = clock or SystemClock()
        self._on_delivered = on_delivered
        self._on_failed = on_failed
        # Rows handed to the link, and rows delivered whose delete is not yet committed:
        # neither may be fetched again.
        self.in_flight: set[int] = set()
        self._deleting: set[int] = set()
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """New rows were committed, or a delivery freed room: look again."""
        self._wake.set()

    async def wait(self, poll_s: float = 1.0) -> None:
        """Until notified; polls as a backstop so a missed wake-up costs at most `poll_s`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(poll_s):
                await self._wake.wait()
        self._wake.clear()

    def fetch(self, limit: int) -> list[OutboxRow]:
        """The next rows to send, alarms first; each is then in flight."""
        self._wake.clear()
        if limit <= 0:
            return []
        rows = self._store.outbox_fetch(self._target, limit, self.in_flight | self._deleting)
        self.in_flight.update(row.id for row in rows)
        return rows

    def delivered(self, row: OutboxRow) -> None:
        """The target acknowledged the row (PUBACK, 2xx): delete it."""
        self.in_flight.discard(row.id)
        self._deleting.add(row.id)
        self._wake.set()
        done = self._store.submit(WriteBatch(outbox_acked=[row.id]))
        row_id = row.id

        def forget(_: asyncio.Future[None]) -> None:
            self._deleting.discard(row_id)

        done.add_done_callback(forget)
        if self._on_delivered is not None:
            self._on_delivered(row, self._clock.now())

    def failed(self, reason: str) -> None:
        """A delivery failed; `reason` is a bounded label for metrics."""
        if self._on_failed is not None:
            self._on_failed(reason)

    def link_lost(self) -> None:
        """Whatever was in flight is still in the table: it goes again on the next link."""
        self.in_flight.clear()
