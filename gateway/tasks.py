"""Tasks nobody awaits (linkage commands, gate commands, snapshots): their failure must
leave a log line, not vanish with the task."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("gateway.tasks")


def log_failure(task: asyncio.Task[Any]) -> None:
    """A done-callback: log the task's exception, if it ended with one."""
    if not task.cancelled() and task.exception() is not None:
        log.error("task=%s failed", task.get_name(), exc_info=task.exception())
