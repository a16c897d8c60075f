"""The HTTP API against a real aiohttp server on a loopback port and a real AlertBook."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.alerts import AlertBook, AlertChange, AlertSignal
from gateway.api import desk_connections, make_app
from gateway.events import Severity
from gateway.metrics import Metrics

NOW = 1_764_000_000.0


def ok() -> Mapping[str, Any]:
    return {"status": "ok", "store": "open"}


def signal(source: str, *, active: bool = True, zone: str = "A-1F",
           rule: str = "fire.static", severity: Severity = Severity.CRITICAL) -> AlertSignal:
    return AlertSignal(rule=rule, source=source, zone=zone, severity=severity, active=active,
                       summary=f"{source} 58.0 °C")


def apply(book: AlertBook, sig: AlertSignal, now: float = NOW) -> AlertChange:
    change = book.apply(sig, now)
    assert change is not None
    book.publish(change)
    return change


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[tuple[str, web.AppRunner]]:
    """The app on 127.0.0.1, a free port; yields its base URL and runner."""
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", runner
    finally:
        await runner.cleanup()


@dataclass
class Fetched:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def fetch(app: web.Application, path: str) -> Fetched:
    """One GET against the app served on a fresh loopback port."""
    async with (
        served(app) as (url, _),
        aiohttp.ClientSession() as http,
        http.get(url + path) as resp,
    ):
        return Fetched(resp.status, dict(resp.headers), await resp.read())


@asynccontextmanager
async def live_feed(app: web.Application) -> AsyncIterator[aiohttp.ClientResponse]:
    async with (
        served(app) as (url, _),
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/alerts/stream") as resp,
    ):
        yield resp


@dataclass
class SseEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.data)


async def next_event(content: aiohttp.StreamReader, within: float = 5.0) -> SseEvent:
    """Read one event block as an EventSource would (comments kept, for the tests)."""
    ev = SseEvent()
    async with asyncio.timeout(within):
        while True:
            raw = await content.readline()
            if not raw:
                raise EOFError("stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if ev.data or ev.comments or ev.event != "message":
                    return ev
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                ev.comments.append(value)
            elif name == "event":
                ev.event = value
            elif name == "data":
                ev.data = value if not ev.data else f"{ev.data}\n{value}"
            elif name == "id":
                ev.id = value


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        # The book announces no unsubscription, so its counter is polled.
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
def book() -> AlertBook:
    return AlertBook(test_zones={"DRILL-ZONE"})


async def test_alerts_lists_active_and_recent(book: AlertBook) -> None:
    fire = apply(book, signal("hd-0101"))
    gone = apply(book, signal("hd-0102", severity=Severity.MAJOR, rule="fire.prewarn"))
    apply(book, signal("hd-0102", active=False, rule="fire.prewarn", severity=Severity.MAJOR),
          NOW + 30)
    app = make_app(book=book, metrics=Metrics(), health=ok)

    listed = await fetch(app, "/api/alerts")
    assert listed.status == 200
    body = listed.json()
    assert [a["id"] for a in body["active"]] == [fire.alert.id]
    assert body["active"][0]["severity"] == "critical"
    assert body["active"][0]["state"] == "firing"
    states = {a["id"]: a["state"] for a in body["recent"]}
    assert states == {fire.alert.id: "firing", gone.alert.id: "resolved"}

    one = await fetch(app, f"/api/alerts/{gone.alert.id}")
    assert one.status == 200
    assert one.json()["cleared_at"] == NOW + 30
    assert (await fetch(app, "/api/alerts/01NOSUCHALERT")).status == 404


@pytest.mark.parametrize(
    ("query", "status", "active", "recent"),
    [
        ("", 200, 2, 2),
        ("?state=all", 200, 2, 2),
        ("?state=firing", 200, 2, 0),
        ("?limit=1", 200, 2, 1),
        ("?state=resolved", 400, None, None),
        ("?limit=0", 400, None, None),
        ("?limit=many", 400, None, None),
        ("?limit=100000", 400, None, None),
    ],
)
async def test_alerts_query(
    book: AlertBook, query: str, status: int, active: int | None, recent: int | None
) -> None:
    apply(book, signal("hd-0201"))
    apply(book, signal("hd-0202"), NOW + 1)
    got = await fetch(make_app(book=book, metrics=Metrics(), health=ok), f"/api/alerts{query}")
    assert got.status == status
    body = got.json()
    if status == 200:
        assert len(body["active"]) == active
        assert len(body["recent"]) == recent
    else:
        assert "error" in body


async def test_alerts_recent_comes_from_history_when_bound(book: AlertBook) -> None:
    asked: list[int] = []

    def history(limit: int) -> list[dict[str, Any]]:
        asked.append(limit)
        return [{"id": "01STORED", "state": "resolved"}]

    app = make_app(book=book, metrics=Metrics(), health=ok, history=history)
    got = await fetch(app, "/api/alerts?limit=50")
    assert asked == [50]
    assert got.json() == {"active": [], "recent": [{"id": "01STORED", "state": "resolved"}]}


async def test_stream_sends_snapshot_then_raised_and_cleared(book: AlertBook) -> None:
    before = apply(book, signal("hd-0301", zone="B-2F"))
    app = make_app(book=book, metrics=Metrics(), health=ok)
    async with live_feed(app) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Cache-Control"] == "no-cache"

        snapshot = await next_event(resp.content)
        assert snapshot.event == "snapshot"
        assert [a["id"] for a in snapshot.json()["active"]] == [before.alert.id]
        assert desk_connections(app) == 1

        raised = apply(book, signal("hd-0302", zone="DRILL-ZONE"), NOW + 5)
        ev = await next_event(resp.content)
        assert (ev.event, ev.id) == ("alert", raised.alert.id)
        assert ev.json()["change"] == "raised"
        assert ev.json()["alert"]["drill"] is True

        cleared = apply(book, signal("hd-0302", zone="DRILL-ZONE", active=False), NOW + 9)
        ev = await next_event(resp.content)
        assert (ev.event, ev.id) == ("alert", raised.alert.id)
        assert ev.json()["change"] == "cleared"
        assert ev.json()["alert"]["cleared_at"] == cleared.alert.cleared_at == NOW + 9


async def test_stream_keepalive_is_a_comment_and_a_ping(book: AlertBook) -> None:
    app = make_app(book=book, metrics=Metrics(), health=ok, keepalive=0.05)
    async with live_feed(app) as resp:
        snapshot = await next_event(resp.content)
        assert snapshot.json() == {"active": [], "keepalive": 0.05}
        for _ in range(2):
            ev = await next_event(resp.content, within=2)
            assert ev.comments == ["keep-alive"]
            assert ev.event == "ping"


async def test_stream_resends_snapshot_when_the_desk_fell_behind(book: AlertBook) -> None:
    app = make_app(book=book, metrics=Metrics(), health=ok)
    async with live_feed(app) as resp:
        await next_event(resp.content)
        # No await in between: the stream cannot drain, its subscription overflows.
        for n in range(300):
            apply(book, signal(f"hd-{n:04d}"), NOW + n)
        first = await next_event(resp.content)
        assert first.event == "alert"
        again = await next_event(resp.content)
        assert again.event == "snapshot"
        assert len(again.json()["active"]) == 300


async def test_shutdown_ends_open_streams_quickly(book: AlertBook) -> None:
    app = make_app(book=book, metrics=Metrics(), health=ok)
    runner = web.AppRunner(app)  # aiohttp's default would wait 60 s for open handlers
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as http:
        streams = [await http.get(f"http://{host}:{port}/api/alerts/stream") for _ in range(3)]
        for resp in streams:
            assert (await next_event(resp.content)).event == "snapshot"
        assert book.subscriber_count == 3

        started = time.monotonic()
        await asyncio.wait_for(runner.cleanup(), timeout=5)
        assert time.monotonic() - started < 5
        for resp in streams:
            with pytest.raises(EOFError):
                await next_event(resp.content)
            resp.release()
    assert book.subscriber_count == 0


async def test_a_desk_that_leaves_is_unsubscribed(book: AlertBook) -> None:
    app = make_app(book=book, metrics=Metrics(), health=ok, keepalive=0.05)
    async with served(app) as (url, _):
        async with aiohttp.ClientSession() as http, http.get(f"{url}/api/alerts/stream") as resp:
            await next_event(resp.content)
            assert book.subscriber_count == 1
        # The next keep-alive write finds the socket gone.
        await wait_until(lambda: book.subscriber_count == 0)
        assert desk_connections(app) == 0


def failing_health() -> Mapping[str, Any]:
    raise RuntimeError("store closed")


@pytest.mark.parametrize(
    ("health", "status", "body"),
    [
        (ok, 200, {"status": "ok", "store": "open"}),
        (lambda: {"status": "degraded", "outbox": "city: 1200 rows"}, 503,
         {"status": "degraded", "outbox": "city: 1200 rows"}),
        (lambda: {"store": "open"}, 503, {"store": "open"}),
        (failing_health, 503, {"status": "error"}),
    ],
)
async def test_healthz(
    book: AlertBook, health: Callable[[], Mapping[str, Any]], status: int, body: dict[str, Any]
) -> None:
    got = await fetch(make_app(book=book, metrics=Metrics(), health=health), "/healthz")
    assert got.status == status
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.json() == body


async def test_dead_letters_are_listed_newest_first_within_the_limit(book: AlertBook) -> None:
    asked: list[int] = []

    def dead_letters(limit: int) -> list[dict[str, Any]]:
        asked.append(limit)
        return [{"id": 7, "target": "ops", "status": 422}]

    app = make_app(book=book, metrics=Metrics(), health=ok, dead_letters=dead_letters)
    got = await fetch(app, "/api/outbox/dead")
    assert got.status == 200
    assert got.json() == {"dead": [{"id": 7, "target": "ops", "status": 422}]}
    assert (await fetch(app, "/api/outbox/dead?limit=5")).status == 200
    assert (await fetch(app, "/api/outbox/dead?limit=0")).status == 400
    assert asked == [100, 5]
    bare = await fetch(make_app(book=book, metrics=Metrics(), health=ok), "/api/outbox/dead")
    assert bare.json() == {"dead": []}


async def test_metrics_page(book: AlertBook) -> None:
    metrics = Metrics()
    metrics.event("fire.detector.alarm")
    got = await fetch(make_app(book=book, metrics=metrics, health=ok), "/metrics")
    assert got.status == 200
    assert got.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = got.body.decode()
    assert 'gateway_events_total{kind="fire.detector.alarm"} 1.0' in text
    assert "gateway_build_info{" in text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html"),
        ("/static/desk.js", "javascript"),
        ("/static/desk.css", "text/css"),
    ],
)
async def test_desk_page_and_assets_are_served_locally(
    book: AlertBook, path: str, content_type: str
) -> None:
    got = await fetch(make_app(book=book, metrics=Metrics(), health=ok), path)
    assert got.status == 200
    assert content_type in got.headers["Content-Type"]
    # The site is air-gapped: nothing may be loaded from elsewhere.
    assert b"http:" not in got.body
    assert b"https:" not in got.body
    if path == "/":
        assert b"/static/desk.js" in got.body
        assert "default-src 'self'" in got.headers["Content-Security-Policy"]
