"""Webhook delivery against a real HTTP receiver: retried until 2xx, in order, with the
token from the environment; drills stay inside the compound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.brokers import Mosquitto
from tests.harness import DeskSubscriber, detectors, running_gateway, write_site


class Receiver:
    """An operations-centre endpoint that is down for its first `failures` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        status = 503 if len(self.requests) < self.failures else 200
        self.requests.append((status, dict(request.headers), body))
        return web.json_response({"ok": status == 200}, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/fire", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hooks/fire"

    def delivered(self) -> list[dict[str, Any]]:
        return [body for status, _, body in self.requests if status == 200]


async def test_webhook_retries_until_accepted_and_keeps_drills_inside(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_TOKEN", "t0ken-for-tests")
    receiver = Receiver(failures=2)
    await receiver.start()
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port), detectors=3,
                      webhook=receiver.url, drill_detectors=frozenset({3}))
    try:
        async with (
            DeskSubscriber(mosquitto.host, mosquitto.port) as desk,
            running_gateway(site) as gw,
            detectors(mosquitto.host, mosquitto.port) as hd,
        ):
            await hd.send("hd-03", 30.0, alarm=True)  # a drill
            await hd.send("hd-01", 30.0, alarm=True)
            await hd.send("hd-01", 25.0, alarm=False)
            await desk.wait_for(lambda d: {"fire.alarm:hd-01", "fire.alarm:hd-03"}
                                <= set(d.alert_keys()))
            await desk.wait_for(lambda _d: len(receiver.delivered()) >= 2, timeout=30)
            hook = next(s for s in gw.supervisors if s.name == "forward:ops")
            restarts = hook.restarts
    finally:
        assert receiver.runner is not None
        await receiver.runner.cleanup()

    delivered = receiver.delivered()
    assert [(d["change"], d["alert"]["key"]) for d in delivered] == [
        ("raised", "fire.alarm:hd-01"), ("cleared", "fire.alarm:hd-01")]
    assert delivered[0]["alert"]["id"] == delivered[1]["alert"]["id"]
    assert restarts == 2  # two 503s, two reconnects, nothing lost
    first_tries = [r for r in receiver.requests if r[0] == 503]
    assert all(r[2]["alert"]["key"] == "fire.alarm:hd-01" for r in first_tries)
    for _status, headers, body in receiver.requests:
        assert headers["Authorization"] == "Bearer t0ken-for-tests"
        assert headers["Idempotency-Key"] == f"{body['alert']['id']}:{body['change']}"
    drill = next(m for m in desk.messages if m["alert"]["key"] == "fire.alarm:hd-03")
    assert drill["alert"]["drill"] is True
    assert "t0ken" not in json.dumps([m for m in desk.messages])
