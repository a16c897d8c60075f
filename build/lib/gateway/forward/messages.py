"""What the gateway publishes, and under which topic. The topic scheme, for a prefix P
(default `furong/gw1`):

- `P/alert/<source>`  QoS 1, not retained: one message per alert change
  (`{"change": "raised"|"cleared", "alert": {...}}`); receivers dedupe on `alert.id` + change.
- `P/state/<source>`  QoS 1, retained: the device's current state
  (`{"device", "state", "since", "alerts": [active alert keys]}`), so a new subscriber
  sees every device at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from gateway.alerts import AlertChange
from gateway.events import Lane, Severity
from gateway.store import NewOutboxRow


def alert_topic(prefix: str, source: str) -> str:
    return f"{prefix}/alert/{source}"


def state_topic(prefix: str, source: str) -> str:
    return f"{prefix}/state/{source}"


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def alert_rows(change: AlertChange, targets: Iterable[tuple[str, str]]) -> list[NewOutboxRow]:
    """One outbox row per target (id, topic prefix) for an alert change."""
    alert = change.alert
    lane = Lane.ALARM if alert.severity >= Severity.MAJOR else Lane.EVENT
    payload = _dumps({"change": change.change, "alert": alert.to_json()})
    return [
        NewOutboxRow(target, int(lane), alert_topic(prefix, alert.source), payload)
        for target, prefix in targets
    ]


def state_rows(
    source: str,
    state: str,
    since: float,
    alert_keys: list[str],
    targets: Iterable[tuple[str, str]],
) -> list[NewOutboxRow]:
    payload = _dumps({"device": source, "state": state, "since": since, "alerts": alert_keys})
    return [
        NewOutboxRow(target, int(Lane.EVENT), state_topic(prefix, source), payload, retain=True)
        for target, prefix in targets
    ]
