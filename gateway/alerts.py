"""Alerts: what the security desk sees. Rules say whether a condition holds; the book
turns that into raised/cleared alerts, deduplicated by key."""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Literal

from gateway.events import Severity, new_id


class AlertState(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertSignal:
    """A rule's verdict: condition `rule` on `source` holds (active) or no longer holds."""

    rule: str  # e.g. "fire.static", "fire.ror", "fire.fault", "device.stale"
    source: str
    zone: str
    severity: Severity
    active: bool
    summary: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    # Set by a rule that also says what the device is now ("stale", "up"): the pipeline
    # records the transition beside the alert, whatever module signalled it.
    device_state: str | None = None

    @property
    def key(self) -> str:
        return f"{self.rule}:{self.source}"


@dataclass(frozen=True, slots=True)
class Alert:
    id: str  # time-sortable, fixed for the alert's whole life (receivers dedupe on it)
    key: str
    rule: str
    source: str
    zone: str
    severity: Severity
    state: AlertState
    raised_at: float
    cleared_at: float | None
    summary: str
    data: dict[str, Any]
    drill: bool = False  # raised in a zone in test mode: recorded, not called out

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "rule": self.rule,
            "source": self.source,
            "zone": self.zone,
            "severity": self.severity.label,
            "state": self.state.value,
            "raised_at": self.raised_at,
            "cleared_at": self.cleared_at,
            "summary": self.summary,
            "data": self.data,
            "drill": self.drill,
        }


@dataclass(frozen=True, slots=True)
class AlertChange:
    change: Literal["raised", "cleared"]
    alert: Alert


class AlertSubscription:
    """One live-feed reader: an async iterator of AlertChange over a bounded queue.

    A reader that falls behind loses its oldest changes (counted in `dropped`) rather
    than slowing the book; the desk reloads the snapshot when `dropped` grows.
    """

    def __init__(self, book: AlertBook, bound: int) -> None:
        if bound < 1:
            raise ValueError(f"a subscription holds at least one change, not {bound}")
        self._book = book
        self._queue: deque[AlertChange] = deque()
        self._bound = bound
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def offer(self, change: AlertChange) -> bool:
        """Queue one change without waiting; False when the oldest had to make room."""
        kept_all = len(self._queue) < self._bound
        if not kept_all:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(change)
        self._wake.set()
        return kept_all

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._book.unsubscribe(self)
            self._wake.set()

    def __aiter__(self) -> AlertSubscription:
        return self

    async def __anext__(self) -> AlertChange:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()

    async def __aenter__(self) -> AlertSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class AlertBook:
    """The alerts of the site: firing ones by key, and a bounded ring of recent ones.

    `apply` only decides; the caller commits the change to the store and then calls
    `publish`, so no reader ever sees an alert that a crash could still lose.
    """

    def __init__(self, *, test_zones: Collection[str] = (), history: int = 500) -> None:
        self.test_zones = frozenset(test_zones)
        self._history = history
        self._firing: dict[str, Alert] = {}
        self._recent: dict[str, Alert] = {}  # by id, oldest raised first
        self._subscribers: set[AlertSubscription] = set()
        self.dropped_changes = 0  # over all slow subscribers, for metrics

    def reset(self) -> None:
        """Forget every alert (the core restarts from the store); readers stay subscribed."""
        self._firing.clear()
        self._recent.clear()

    def restore(self, alerts: Iterable[Alert]) -> None:
        """Load alerts from the store at start; firing ones are deduplicated against."""
        for alert in sorted(alerts, key=lambda a: a.raised_at):
            if alert.state is AlertState.FIRING:
                self._firing[alert.key] = alert
            self._remember(alert)

    def apply(self, signal: AlertSignal, now: float) -> AlertChange | None:
        if signal.active:
            if signal.key in self._firing:
                return None
            alert = Alert(
                id=new_id(now),
                key=signal.key,
                rule=signal.rule,
                source=signal.source,
                zone=signal.zone,
                severity=signal.severity,
                state=AlertState.FIRING,
                raised_at=now,
                cleared_at=None,
                summary=signal.summary,
                data=dict(signal.data),
                drill=signal.zone in self.test_zones,
            )
            self._firing[alert.key] = alert
            self._remember(alert)
            return AlertChange("raised", alert)
        firing = self._firing.pop(signal.key, None)
        if firing is None:
            return None
        # The raised summary says what happened; the clearing one goes beside it.
        data = {**firing.data, "clear_summary": signal.summary} if signal.summary else firing.data
        cleared = replace(firing, state=AlertState.RESOLVED, cleared_at=now, data=data)
        self._remember(cleared)
        return AlertChange("cleared", cleared)

    def active(self) -> list[Alert]:
        """Firing alerts, most severe first, then newest first."""
        return sorted(self._firing.values(), key=lambda a: (-a.severity, -a.raised_at))

    def recent(self, limit: int = 200) -> list[Alert]:
        """Newest first, any state, at most `history` of them."""
        return list(islice(reversed(self._recent.values()), limit))

    def get(self, alert_id: str) -> Alert | None:
        alert = self._recent.get(alert_id)
        if alert is not None:
            return alert
        # A long-firing alert may have left the recent ring.
        return next((a for a in self._firing.values() if a.id == alert_id), None)

    def counts_by_severity(self) -> dict[Severity, int]:
        counts = dict.fromkeys(Severity, 0)
        for alert in self._firing.values():
            counts[alert.severity] += 1
        return counts

    def subscribe(self, *, bound: int = 256) -> AlertSubscription:
        subscription = AlertSubscription(self, bound)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: AlertSubscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, change: AlertChange) -> None:
        """Fan a committed change out to every subscriber; never waits."""
        for subscription in self._subscribers:
            if not subscription.offer(change):
                self.dropped_changes += 1

    def _remember(self, alert: Alert) -> None:
        # Replacing a value keeps its place, so a cleared alert stays where it was raised.
        self._recent[alert.id] = alert
        while len(self._recent) > self._history:
            del self._recent[next(iter(self._recent))]
