"""Start-up's objects are frozen out of the garbage collector once the daemon is up, so a
full collection under load walks only what came since (a 70 ms pause otherwise)."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

import pytest

import gateway.app as app
from tests.brokers import Mosquitto
from tests.harness import running_gateway, write_site


async def test_the_running_daemon_freezes_its_start_up_heap(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(app, "HEAP_FREEZE_AFTER_S", 0.05)
    caplog.set_level(logging.INFO, logger="gateway.app")
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port))
    try:
        async with running_gateway(site):
            async with asyncio.timeout(10):
                while gc.get_freeze_count() == 0:
                    await asyncio.sleep(0.05)
        assert any("heap frozen objects=" in r.getMessage() for r in caplog.records)
        # Later garbage is still collected: a cycle made now is found by a full collection.
        class Node:
            other: object = None
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()
