"""Where an alarm's time goes inside the gateway: a stage clock for the heat benchmark.

Off unless the environment variable `GATEWAY_TRACE_ALARMS` names a file. Then every alarm
event (the alarm lane) is stamped at each stage on its way, and the alert it raises
carries the stamps on through the commit and the forwarder. At exit one JSON line per
alert goes to the file: `{"alert": id, "source": ..., "stages": {stage: t}}`, with `t`
from `time.perf_counter()` (the system's monotonic clock, so another process on the same
machine can put its own stamps beside them).

Stages, in order:
- `read`: paho had read the message off the socket (its `timestamp`);
- `routed`: the codec and router made the event (on the bus);
- `pipeline`: the pipeline took the batch holding it;
- `processed`: the rules and alert book were done with that batch;
- `commit_start`, `commit_end`: the writer thread's transaction for it;
- `committed`: the loop saw the commit;
- `fetched`: the forwarder took the alert's outbox row, which its reader sees only once
  committed. It may come before `committed` (another alert's wake-up fetched it), and even
  a little before `commit_end`, which the writer thread stamps once the commit has
  returned and it has the interpreter back;
- `acked`: the upstream broker acknowledged it.

Off, each hook is one test of a module constant: nothing on the hot path."""

from __future__ import annotations

import atexit
import json
import os
import time
from typing import Final

PATH: Final = os.environ.get("GATEWAY_TRACE_ALARMS") or None
ON: Final = PATH is not None
# Bounds: a long run traces its first alarms only, never memory without end.
MAX_TRACED: Final = 100_000

now = time.perf_counter

# The message the MQTT driver is routing right now (paho's read stamp).
reading: float = 0.0
_events: dict[str, dict[str, float]] = {}
_alerts: dict[str, tuple[str, dict[str, float]]] = {}
_commits: dict[int, tuple[float, float]] = {}


def routed(event_id: str) -> None:
    if len(_events) < MAX_TRACED:
        _events[event_id] = {"read": reading, "routed": now()}


def event_stage(event_id: str, stage: str, t: float) -> None:
    stages = _events.get(event_id)
    if stages is not None:
        stages[stage] = t


def raised(alert_id: str, source: str, event_id: str) -> None:
    """The alert `alert_id` was raised by the event `event_id`: its stamps so far go on."""
    stages = _events.get(event_id)
    if stages is not None:  # one event may raise several alerts (the fire model's too)
        _alerts[alert_id] = (source, dict(stages))


def alert_stage(alert_id: str, stage: str, t: float | None = None) -> None:
    entry = _alerts.get(alert_id)
    if entry is not None:
        entry[1].setdefault(stage, now() if t is None else t)


def commit(batch_key: int, started: float, ended: float) -> None:
    """From the writer thread: one batch's transaction (keyed by its future's id)."""
    if len(_commits) < MAX_TRACED:
        _commits[batch_key] = (started, ended)


def take_commit(batch_key: int) -> tuple[float, float] | None:
    return _commits.pop(batch_key, None)


def dump() -> None:
    if PATH is None:
        return
    with open(PATH, "w", encoding="utf-8") as out:
        for alert_id, (source, stages) in _alerts.items():
            out.write(json.dumps({"alert": alert_id, "source": source, "stages": stages}))
            out.write("\n")


if ON:
    atexit.register(dump)
