"""The security desk page in headless Chromium against a live gateway API.

Chromium is driven over the DevTools protocol, not with `--dump-dom --virtual-time-budget`:
virtual time stands still while a fetch is pending, and the desk's live feed never ends,
so that command waits forever once the page is connected.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from gateway.alerts import AlertBook
from gateway.api import desk_connections, make_app
from gateway.events import Severity
from gateway.metrics import Metrics
from tests.test_api import apply, ok, served, signal, wait_until

SITE_TZ = "Asia/Shanghai"


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("chromium is not installed: run `sh scripts/install-system-deps`")
    return found


class Page:
    """One browser tab, spoken to over the DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        ask = self._next_id
        await self._ws.send_json({"id": ask, "method": method, "params": params})
        async with asyncio.timeout(10):
            while True:
                reply = json.loads((await self._ws.receive()).data)
                if reply.get("id") == ask:  # anything else is an event nobody asked for
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    result: dict[str, Any] = reply["result"]
                    return result

    async def eval(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply["result"].get("value")

    async def until(self, expression: str, within: float = 15.0) -> None:
        """Wait (in real time) until the expression is true in the page."""
        async with asyncio.timeout(within):
            # The page announces nothing to the test, so it is polled.
            while not await self.eval(expression):
                await asyncio.sleep(0.05)


@asynccontextmanager
async def desk_in_chromium(url: str, profile: Path) -> AsyncIterator[Page]:
    """Chromium showing `url` at 1280x800 in the site's time zone."""
    log = (profile.parent / "chromium.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0", "--window-size=1280,800", "--hide-scrollbars", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=log,
        env={**os.environ, "TZ": SITE_TZ},
    )
    try:
        port_file = profile / "DevToolsActivePort"
        await wait_until(port_file.exists, within=30)
        await wait_until(lambda: "\n" in port_file.read_text())
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            targets: list[dict[str, Any]] = []
            async with asyncio.timeout(10):
                while not targets:
                    async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                        targets = [t for t in await resp.json() if t["type"] == "page"]
                    await asyncio.sleep(0.05)
            async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.close()


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


async def test_desk_shows_alerts_raised_before_and_during_load(tmp_path: Path) -> None:
    book = AlertBook(test_zones={"C-DRILL"})
    now = time.time()
    apply(book, signal("meter-12", rule="device.stale", severity=Severity.MAJOR, zone="B1"),
          now - 600)
    before = apply(book, signal("hd-0301", zone="A-3F 会议室"), now - 42)
    app = make_app(book=book, metrics=Metrics(), health=ok)
    async with served(app) as (url, _), desk_in_chromium(f"{url}/", tmp_path / "profile") as page:
        await wait_until(lambda: desk_connections(app) == 1, within=30)
        during = apply(book, signal("hd-0912", zone="C-DRILL"), time.time())
        rows = "[...document.querySelectorAll('#rows tr')].map(r => r.dataset.alertId)"
        await page.until(f"{rows}.includes({json.dumps(during.alert.id)})")
        dom = await page.eval("document.documentElement.outerHTML")
        order = await page.eval(rows)
        first = await page.eval("document.querySelector('#rows tr').className")
        shown_time = await page.eval("document.querySelector('#rows tr td.time').firstChild.data")
        live = await page.eval("document.getElementById('link-text').textContent")
        banner = await page.eval("document.getElementById('banner').className")
        await page.call("Emulation.setDeviceMetricsOverride", width=1280, height=800,
                        deviceScaleFactor=1, mobile=False)
        shot = await page.call("Page.captureScreenshot", format="png")

    assert before.alert.id in dom
    assert during.alert.id in dom
    assert f"{before.alert.source} 58.0 °C" in dom
    # The real fire alarm is on top and red; the drill fire below it, marked as a drill.
    assert order[0] == before.alert.id
    assert order[1] == during.alert.id
    assert len(order) == 3
    assert first == "fire"
    assert "演习 DRILL" in dom
    assert banner == "fire"
    assert "Live" in live
    raised = datetime.fromtimestamp(before.alert.raised_at, ZoneInfo(SITE_TZ))
    assert shown_time == raised.strftime("%H:%M:%S")  # local time on the desk, not UTC

    png = base64.b64decode(shot["data"])
    (tmp_path / "desk.png").write_bytes(png)
    assert png_size(png) == (1280, 800)
    assert len(png) > 20_000  # a blank 1280x800 page compresses to a few kilobytes


async def test_desk_drops_cleared_alerts_and_shows_a_lost_link(tmp_path: Path) -> None:
    book = AlertBook()
    now = time.time()
    lift = apply(book, signal("lift-3", rule="elevator.entrapment", zone="A-core"), now - 15)
    app = make_app(book=book, metrics=Metrics(), health=ok)
    async with served(app) as (url, runner), desk_in_chromium(
        f"{url}/", tmp_path / "profile"
    ) as page:
        has_lift = f"!!document.querySelector('tr[data-alert-id=\"{lift.alert.id}\"]')"
        await page.until(has_lift)
        assert await page.eval("document.body.classList.contains('offline')") is False

        apply(book, signal("lift-3", rule="elevator.entrapment", zone="A-core", active=False),
              time.time())
        await page.until(f"!({has_lift})")
        assert await page.eval("document.getElementById('empty').classList.contains('shown')")

        await runner.cleanup()  # the gateway stops: the desk must see the link go
        await page.until("document.body.classList.contains('offline')")
        text = await page.eval("document.getElementById('link-text').textContent")
    assert "Link lost" in text

