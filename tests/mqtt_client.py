"""A test's own MQTT client (a detector, the desk, a rogue publisher): the gateway's MQTT
stack, paho on the event loop, against the real broker under test."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from gateway.mqtt_loop import LinkOptions, MqttLink

_ids = itertools.count(1)


@contextlib.asynccontextmanager
async def mqtt_client(host: str, port: int, client_id: str | None = None,
                      **options: Any) -> AsyncIterator[MqttLink]:
    """A connected link; MQTT 3.1.1 and a clean session unless told otherwise."""
    options.setdefault("protocol", 4)
    options.setdefault("max_inflight", 1000)
    link = MqttLink(LinkOptions(host, port, client_id or f"test-client-{next(_ids)}",
                                **options))
    await link.connect()
    try:
        yield link
    finally:
        await link.disconnect(timeout_s=1.0)
