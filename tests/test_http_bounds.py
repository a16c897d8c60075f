"""The HTTP side under abuse, on a real loopback port: idle and slow sockets, too many
live feeds, malformed requests. /healthz must keep answering through all of it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.alerts import AlertBook
from gateway.api import HttpLimits, make_app, serve
from gateway.app import Gateway, Overrides
from gateway.config import load_site
from gateway.metrics import Metrics
from tests.brokers import Mosquitto
from tests.harness import write_site


def ok() -> dict[str, str]:
    return {"status": "ok"}


@contextlib.asynccontextmanager
async def served(
    limits: HttpLimits, *, app: web.Application | None = None, metrics: Metrics | None = None
) -> AsyncIterator[int]:
    """The API with `limits` on a free loopback port; yields the port."""
    if app is None:
        app = make_app(book=AlertBook(), metrics=metrics or Metrics(), health=ok,
                       keepalive=0.2, limits=limits)
    runner = await serve(app, "127.0.0.1", 0)
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def get(port: int, path: str, timeout: float = 3.0) -> tuple[int, dict[str, str]]:
    """One GET on a fresh connection, bounded in time."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
        http.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        await response.read()
        return response.status, dict(response.headers)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server sent before closing; fails if it does not close in time. A reset
    (the server closed with our bytes unread) ends it too, keeping what had arrived."""
    got = b""
    async with asyncio.timeout(within):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                got += chunk
    return got


async def test_idle_sockets_and_full_feeds_leave_healthz_answering() -> None:
    # The shipped bounds. Timeouts are long here, so what makes room is the gate itself.
    limits = HttpLimits(header_timeout_s=60, keepalive_s=60)
    metrics = Metrics()
    connector = aiohttp.TCPConnector(limit=0)
    idle: list[asyncio.StreamWriter] = []
    async with served(limits, metrics=metrics) as port, aiohttp.ClientSession(
        connector=connector
    ) as feeds_session:
        url = f"http://127.0.0.1:{port}/api/alerts/stream"
        feeds = [await feeds_session.get(url) for _ in range(limits.max_feed_clients)]
        try:
            for feed in feeds:
                assert feed.status == 200
                snapshot = await asyncio.wait_for(feed.content.readuntil(b"\n\n"), 3)
                assert b"event: snapshot" in snapshot
            status, headers = await get(port, "/api/alerts/stream")
            assert status == 503
            assert int(headers["Retry-After"]) > 0

            for _ in range(limits.max_connections + limits.max_feed_clients + 32):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                idle.append(writer)
            started = time.monotonic()
            assert (await get(port, "/healthz"))[0] == 200
            assert (await get(port, "/metrics"))[0] == 200
            assert time.monotonic() - started < 3

            page = metrics.render()[0].decode()
            open_now = metrics.registry.get_sample_value("gateway_http_connections")
            assert open_now is not None and open_now <= limits.max_connections
            assert metrics.registry.get_sample_value(
                "gateway_http_feed_clients") == limits.max_feed_clients
            evicted = metrics.registry.get_sample_value(
                "gateway_http_refused_total", {"reason": "evicted"})
            assert evicted is not None and evicted >= 64
            assert 'gateway_http_refused_total{reason="feed_limit"} 1.0' in page
            # The feeds were never the ones to give way: each still gets its pings.
            for feed in feeds:
                assert b"event: ping" in await asyncio.wait_for(
                    feed.content.readuntil(b"event: ping"), 3)
        finally:
            for feed in feeds:
                feed.close()
            for writer in idle:
                writer.close()


async def test_a_silent_socket_is_closed_after_the_header_timeout() -> None:
    async with served(HttpLimits(header_timeout_s=0.5, keepalive_s=30)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        assert await closed_by_server(reader, within=3) == b""
        assert 0.4 <= time.monotonic() - started < 3
        writer.close()


async def test_headers_sent_slowly_are_cut_off_with_408() -> None:
    async with served(HttpLimits(header_timeout_s=0.6, keepalive_s=30)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        closed = asyncio.create_task(closed_by_server(reader, within=3))
        for n in range(20):  # a header every 0.1 s: forever, if the server let it
            if closed.done():
                break
            writer.write(f"X-Slow-{n}: 1\r\n".encode())
            await asyncio.sleep(0.1)
        assert (await closed).startswith(b"HTTP/1.1 408 ")
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    async with served(HttpLimits(header_timeout_s=30, keepalive_s=0.5)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        await closed_by_server(reader, within=3)
        assert time.monotonic() - started < 2
        writer.close()


async def test_a_second_request_on_a_link_has_its_own_header_deadline() -> None:
    async with served(HttpLimits(header_timeout_s=0.5, keepalive_s=30)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        await asyncio.sleep(1.0)  # idle between requests is keep-alive, not a header delay
        writer.write(b"GET /healthz HTTP/1.1\r\n")  # ...and then nothing more
        started = time.monotonic()
        assert (await closed_by_server(reader, within=3)).startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 2
        writer.close()


GARBAGE = {
    "tls_hello": b"\x16\x03\x01garbage\r\n\r\n",
    "long_line": b"GET /" + b"a" * 100 * 1024 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_header": b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    "bad_version": b"GET / HTTP/9.Z\r\n\r\n",
}


async def send_raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionResetError):
            await writer.drain()
        return await closed_by_server(reader, within=3)
    finally:
        writer.close()


async def test_malformed_requests_get_400_and_one_log_line_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    metrics = Metrics()
    app = make_app(book=AlertBook(), metrics=metrics, health=ok, limits=HttpLimits())

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug of our own")

    app.router.add_get("/broken", broken)
    async with served(HttpLimits(), app=app) as port:
        for _ in range(3):
            for name, data in GARBAGE.items():
                answer = await send_raw(port, data)
                assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), (name, answer)
        assert (await get(port, "/healthz"))[0] == 200
        bad_request_records = list(caplog.records)

        assert (await get(port, "/broken"))[0] == 500

    assert not [r for r in bad_request_records if r.exc_info or r.exc_text], [
        r.getMessage() for r in bad_request_records if r.exc_info]
    lines = [r.getMessage() for r in bad_request_records if "bad request" in r.getMessage()]
    kinds = [line.split("kind=")[1].split()[0] for line in lines]
    assert len(kinds) == len(set(kinds)) >= 3, lines
    assert all(r.levelno < logging.ERROR for r in bad_request_records)
    counted = sum(
        s.value for family in metrics.registry.collect() for s in family.samples
        if s.name == "gateway_http_bad_requests_total"
    )
    assert counted == 3 * len(GARBAGE)
    # Our own handler's failure is still reported in full.
    [ours] = [r for r in caplog.records if r.exc_info and "a bug of our own" in str(r.exc_info[1])]
    assert ours.levelno == logging.ERROR


async def test_the_daemon_warns_when_it_binds_beyond_loopback(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.app")
    site_path = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port), detectors=1)
    gateway = Gateway(load_site(site_path), site_path,
                      overrides=Overrides(http_port=0, http_host="0.0.0.0"))  # noqa: S104
    task = asyncio.create_task(gateway.run())
    try:
        async with asyncio.timeout(10):
            await gateway.ready.wait()
    finally:
        gateway.request_shutdown()
        async with asyncio.timeout(10):
            await task
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and "beyond loopback" in r.getMessage()]
    assert len(warnings) == 1
    assert "host=0.0.0.0" in warnings[0].getMessage()
