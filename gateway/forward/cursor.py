"""One forwarding target's view of the outbox: which rows it may fetch now, and the
bookkeeping of a delivered row until its delete is committed."""

from __future__ import annotations

import asyncio

from gateway.store import OutboxRow, Store, WriteBatch


class OutboxCursor:
    def __init__(self, store: Store, target: str) -> None:
        self._store = store
        self._target = target
        # Rows handed to the link, and rows delivered whose delete is not yet committed:
        # neither may be fetched again.
        self.in_flight: set[int] = set()
        self._deleting: set[int] = set()

    def fetch(self, limit: int) -> list[OutboxRow]:
        """The next rows to send, alarms first; each is then in flight."""
        if limit <= 0:
            return []
        rows = self._store.outbox_fetch(self._target, limit, self.in_flight | self._deleting)
        self.in_flight.update(row.id for row in rows)
        return rows

    def delivered(self, row: OutboxRow) -> None:
        """The target acknowledged the row (PUBACK, 2xx): delete it."""
        self.in_flight.discard(row.id)
        self._deleting.add(row.id)
        done = self._store.submit(WriteBatch(outbox_acked=[row.id]))
        row_id = row.id

        def forget(_: asyncio.Future[None]) -> None:
            self._deleting.discard(row_id)

        done.add_done_callback(forget)

    def link_lost(self) -> None:
        """Whatever was in flight is still in the table: it goes again on the next link."""
        self.in_flight.clear()
