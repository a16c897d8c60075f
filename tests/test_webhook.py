"""Webhook delivery against a real HTTP receiver: retried until 2xx, in order, with the
token from the environment; drills stay inside the compound; a row refused for good is
dead-lettered and the rows after it keep flowing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

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


class ScriptedReceiver:
    """A receiver whose answer to each request is `answer(n, body)` (n counts from 0);
    while `held` is clear, the request numbered `hold_at` waits before it is answered."""

    def __init__(self, answer: Callable[[int, dict[str, Any]], int], hold_at: int | None = None):
        self.answer = answer
        self.hold_at = hold_at
        self.held = asyncio.Event()
        self.waiting = asyncio.Event()
        self.requests: list[tuple[int, dict[str, Any]]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        n = len(self.requests)
        if n == self.hold_at:
            self.waiting.set()
            await self.held.wait()
        status = self.answer(n, body)
        self.requests.append((status, body))
        if status == 422:
            return web.json_response({"error": "unknown zone\nfield"}, status=422)
        return web.json_response({"ok": status == 200}, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/fire", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hooks/fire"

    async def stop(self) -> None:
        self.held.set()
        if self.runner is not None:
            await self.runner.cleanup()

    def delivered(self) -> list[dict[str, Any]]:
        return [body for status, body in self.requests if status == 200]


def keys(bodies: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(b["change"], b["alert"]["key"]) for b in bodies]


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


def sample(page: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_a_refused_row_is_dead_lettered_and_later_alerts_still_arrive(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("TEST_WEBHOOK_TOKEN", "t0ken-for-tests")
    receiver = ScriptedReceiver(lambda n, _body: 422 if n == 0 else 200)
    await receiver.start()
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port), detectors=2,
                      webhook=receiver.url)
    try:
        async with (
            running_gateway(site) as gw,
            detectors(mosquitto.host, mosquitto.port) as hd,
        ):
            await hd.send("hd-01", 30.0, alarm=True)  # the receiver refuses this one
            async with asyncio.timeout(20):
                while not receiver.requests:
                    await asyncio.sleep(0.05)
            await hd.send("hd-02", 30.0, alarm=True)
            async with asyncio.timeout(20):
                while not receiver.delivered():
                    await asyncio.sleep(0.05)
            hook = next(s for s in gw.supervisors if s.name == "forward:ops")
            assert gw.http_port is not None
            async with asyncio.timeout(10):
                while not gw.store.outbox_dead():
                    await asyncio.sleep(0.05)
            status, listing = await get(gw.http_port, "/api/outbox/dead")
            _, page = await get(gw.http_port, "/metrics")
            _, health = await get(gw.http_port, "/healthz")
            stats = gw.store.outbox_stats()
    finally:
        await receiver.stop()

    assert keys([b for _s, b in receiver.requests]) == [
        ("raised", "fire.alarm:hd-01"), ("raised", "fire.alarm:hd-02")]
    assert hook.restarts == 0  # the link never dropped for it
    assert stats.get("ops", (0, None))[0] == 0
    assert status == 200
    [dead] = json.loads(listing)["dead"]
    assert (dead["target"], dead["topic"], dead["attempts"], dead["status"]) == (
        "ops", "furong/gw1/alert/hd-01", 1, 422)
    assert dead["reason"].startswith("HTTP 422 Unprocessable Entity: ")
    assert "\n" not in dead["reason"]
    assert sample(page, "gateway_outbox_dead_lettered_total", target="ops") == 1
    assert sample(page, "gateway_outbox_dead_letter_rows", target="ops") == 1
    assert sample(page, "gateway_forward_failed_total", target="ops", reason="refused") == 1
    assert json.loads(health)["outbox_dead"] == {"ops": 1}
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(lines) == 1
    assert f"row={dead['id']} status=422" in lines[0]
    assert "t0ken" not in lines[0]


@pytest.mark.parametrize("statuses", [(429, 503), (408, 500)])
async def test_not_now_answers_are_retried_and_counted_never_dead_lettered(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    statuses: tuple[int, int],
) -> None:
    monkeypatch.setenv("TEST_WEBHOOK_TOKEN", "t0ken-for-tests")
    receiver = ScriptedReceiver(lambda n, _b: statuses[n] if n < len(statuses) else 200,
                                hold_at=len(statuses))
    await receiver.start()
    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port), detectors=1,
                      webhook=receiver.url)
    try:
        async with (
            running_gateway(site) as gw,
            detectors(mosquitto.host, mosquitto.port) as hd,
        ):
            await hd.send("hd-01", 30.0, alarm=True)
            async with asyncio.timeout(20):
                await receiver.waiting.wait()
            # The third try is in the receiver's hands: the row still waits, tried twice.
            async with asyncio.timeout(5):
                while [r.attempts for r in gw.store.outbox_fetch("ops", 10, ())] != [2]:
                    await asyncio.sleep(0.05)
            receiver.held.set()
            async with asyncio.timeout(20):
                while not receiver.delivered() or gw.store.outbox_stats().get("ops"):
                    await asyncio.sleep(0.05)
            dead = gw.store.outbox_dead()
    finally:
        await receiver.stop()
    assert [s for s, _b in receiver.requests] == [*statuses, 200]
    assert keys(receiver.delivered()) == [("raised", "fire.alarm:hd-01")]
    assert dead == []
