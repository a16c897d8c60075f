"""One forwarding target's view of the outbox: which rows it may fetch now, the
bookkeeping of a delivered or dead-lettered row until its move is committed, each row's
failed attempts, and reporting each delivery and failure (metrics)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from gateway.clock import Clock, SystemClock
from gateway.store import DeadLetter, OutboxRow, Store, WriteBatch

Delivered = Callable[[OutboxRow, float], None]
Failed = Callable[[str], None]
DeadLettered = Callable[[OutboxRow], None]


class OutboxCursor:
    def __init__(
        self,
        store: Store,
        target: str,
        *,
        clock: Clock | None = None,
        on_delivered: Delivered | None = None,
        on_failed: Failed | None = None,
        on_dead: DeadLettered | None = None,
    ) -> None:
        self._store = store
        self._target = target
        self._clock = clock or SystemClock()
        self._on_delivered = on_delivered
        self._on_failed = on_failed
        self._on_dead = on_dead
        # Rows handed to the link, and rows delivered whose delete is not yet committed:
        # neither may be fetched again.
        self.in_flight: set[int] = set()
        self._deleting: set[int] = set()
        # Rows the target refused for now (an MQTT 5 PUBACK >= 0x80): held back until then.
        self._held: dict[int, float] = {}
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
        skip = self.in_flight | self._deleting
        if self._held:
            now = self._clock.now()
            self._held = {rid: until for rid, until in self._held.items() if until > now}
            skip |= self._held.keys()
        rows = self._store.outbox_fetch(self._target, limit, skip)
        self.in_flight.update(row.id for row in rows)
        return rows

    def delivered(self, row: OutboxRow) -> None:
        """The target acknowledged the row (PUBACK, 2xx): delete it."""
        self._leave(row, WriteBatch(outbox_acked=[row.id]))
        if self._on_delivered is not None:
            self._on_delivered(row, self._clock.now())

    def dead(self, row: OutboxRow, status: int | None, reason: str) -> None:
        """The target refused the row for good: move it to the dead letters, go on."""
        self._leave(row, WriteBatch(outbox_dead=[DeadLetter(row.id, status, reason)]))
        if self._on_failed is not None:
            self._on_failed("refused")
        if self._on_dead is not None:
            self._on_dead(row)

    def _leave(self, row: OutboxRow, batch: WriteBatch) -> None:
        # Until the move is committed the row is still in the table: it must not be
        # fetched again meanwhile.
        self.in_flight.discard(row.id)
        self._deleting.add(row.id)
        self._wake.set()
        done = self._store.submit(batch)
        row_id = row.id

        def forget(future: asyncio.Future[None]) -> None:
            self._deleting.discard(row_id)
            _retrieved(future)

        done.add_done_callback(forget)

    def failed(self, reason: str, row: OutboxRow | None = None) -> None:
        """A delivery failed; `reason` is a bounded label for metrics. With `row`, that
        row's `attempts` grows by one (it stays in the outbox)."""
        if row is not None:
            self._store.submit(WriteBatch(outbox_attempted=[row.id])).add_done_callback(
                _retrieved
            )
        if self._on_failed is not None:
            self._on_failed(reason)

    def refused(self, row: OutboxRow, reason: str, retry_s: float) -> None:
        """The target did not take the row this time: it stays in the outbox, its attempts
        grow, and it is tried again after `retry_s` while later rows go on."""
        self.in_flight.discard(row.id)
        self._held[row.id] = self._clock.now() + retry_s
        self.failed(reason, row)
        self._wake.set()

    def link_lost(self) -> None:
        """Whatever was in flight is still in the table: it goes again on the next link."""
        self.in_flight.clear()


def _retrieved(future: asyncio.Future[None]) -> None:
    # The store logs a failed write itself; a count lost with it is harmless.
    if not future.cancelled():
        future.exception()
