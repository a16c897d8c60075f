"""The desk page's cameras in headless Chromium against a live desk API: an alert that
carries snapshots shows their thumbnails, each a link to the full JPEG; the cameras panel
takes a snapshot on demand and re-takes a moved camera's reference, under the operator's
name and reason, audited."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import aiohttp

from gateway.alerts import AlertBook, AlertSignal
from gateway.api import make_app
from gateway.api.cameras import DeskCamera, add_camera_routes
from gateway.api.snapshots import add_snapshot_routes
from gateway.clock import SystemClock
from gateway.events import Severity
from gateway.metrics import Metrics
from gateway.snapshots import KeyframeSource, Snapshots, ZoneCamera
from gateway.store import AuditRow
from simulators.camera_clips import ClipSpec, load_clip
from tests.test_api import ok, served
from tests.test_desk_page import desk_in_chromium

ZONE = "main-office-a"


class Seams:
    """The stream monitors' side of two cameras: cam-001 is moved until re-aimed."""

    def __init__(self) -> None:
        self.picture = {"cam-001": "moved", "cam-002": "ok"}
        self.retaken: list[tuple[str, str, str]] = []

    def camera(self, camera: str) -> DeskCamera:
        async def refresh(timeout_s: float) -> bool:
            return True

        async def retake(who: str, why: str) -> object:
            self.retaken.append((camera, who, why))
            self.picture[camera] = "ok"
            return "ok"

        return DeskCamera(camera, ZONE, lambda: "up", lambda: (self.picture[camera], 0.9),
                          refresh, retake)


def thumbs(where: str) -> str:
    """The thumbnails under `where` that loaded, as [link, picture width] pairs."""
    return (f"[...document.querySelectorAll('{where} a.snapshot')]"
            ".map(a => [a.getAttribute('href'), a.querySelector('img').naturalWidth])")


async def test_alert_thumbnails_and_the_cameras_desk_actions(tmp_path: Path) -> None:
    clip = load_clip(ClipSpec("h264"))
    keyframe = b"".join(b"\x00\x00\x00\x01" + nal for nal in clip.frames[0])
    snapshots = Snapshots(tmp_path / "snapshots", 30)
    snapshots.bind([ZoneCamera("cam-001", ZONE), ZoneCamera("cam-002", ZONE)],
                   [KeyframeSource({c: lambda: ("H264", keyframe) for c in
                                    ("cam-001", "cam-002")})])
    book = AlertBook()
    seams = Seams()
    rows: list[AuditRow] = []

    async def audit(row: AuditRow) -> None:
        rows.append(row)

    app = make_app(book=book, metrics=Metrics(), health=ok, zone_names={ZONE: "办公楼A"})
    add_snapshot_routes(app, snapshots)
    add_camera_routes(app, lambda: {c: seams.camera(c) for c in ("cam-001", "cam-002")},
                      snapshots, audit, SystemClock(), {ZONE: "办公楼A"})

    # A fire in the office: the alert names the zone's two snapshots, made as it is raised.
    change = book.apply(AlertSignal("fire.static", "hd-0301", ZONE, Severity.CRITICAL, True,
                                    "hd-0301 58.0 °C"), time.time())
    assert change is not None
    snapshots.attach(change.alert)
    book.publish(change)
    urls = [s["url"] for s in change.alert.data["snapshots"]]
    assert len(urls) == 2

    async with served(app) as (url, _), desk_in_chromium(f"{url}/", tmp_path / "profile") as page:
        alert_row = f"#rows tr[data-alert-id=\"{change.alert.id}\"]"
        await page.until(f"{thumbs(alert_row)}.filter(t => t[1] > 0).length === 2")
        shown = await page.eval(thumbs(alert_row))
        opens = await page.eval(f"[...document.querySelectorAll('{alert_row} a.snapshot')]"
                                ".map(a => a.target)")
        async with aiohttp.ClientSession() as http, http.get(url + urls[0]) as r:
            assert r.status == 200 and r.content_type == "image/jpeg"
            assert (await r.read())[:2] == b"\xff\xd8"

        # The cameras panel: an action without operator and reason is not sent.
        await page.until("document.querySelectorAll('#camera-rows tr').length === 2")
        take = "document.querySelector('#camera-rows tr[data-camera=\"cam-002\"] button.take')"
        await page.eval(f"{take}.click()")
        await page.until("document.getElementById('camera-note').textContent"
                         ".includes('Operator and reason first')")
        assert rows == []
        await page.eval("document.getElementById('operator').value = 'Wang';"
                        "document.getElementById('reason').value = 'a van at the east door';")
        await page.eval(f"{take}.click()")
        cam2 = "#camera-rows tr[data-camera=\"cam-002\"]"
        await page.until(f"{thumbs(cam2)}.filter(t => t[1] > 0).length === 1")
        [[taken, _]] = await page.eval(thumbs(cam2))

        # cam-001 reads moved: re-aimed on purpose, its view becomes the reference.
        retake = ("document.querySelector('#camera-rows tr[data-camera=\"cam-001\"]"
                  " button.retake')")
        assert await page.eval(f"{retake} !== null")
        await page.eval(f"{retake}.click()")
        await page.until(f"{retake} === null")
        picture = await page.eval("document.querySelector('#camera-rows"
                                  " tr[data-camera=\"cam-001\"] td.picture').textContent")
        await page.call("Emulation.setDeviceMetricsOverride", width=1280, height=800,
                        deviceScaleFactor=1, mobile=False)
        shot = await page.call("Page.captureScreenshot", format="png")

    (tmp_path / "desk-cameras.png").write_bytes(base64.b64decode(shot["data"]))
    assert sorted(shown) == sorted([u, 320] for u in urls)  # the sub-stream's own size
    assert opens == ["_blank", "_blank"]  # a click opens the full JPEG
    assert taken.startswith("/api/snapshots/") and taken.endswith("/cam-002.jpg")
    assert (tmp_path / "snapshots" / taken.split("/")[3] / "cam-002.jpg").is_file()
    assert "OK" in picture
    assert [(r.action, r.target, r.detail["stage"]) for r in rows] == [
        ("camera.snapshot", "cam-002", "requested"), ("camera.snapshot", "cam-002", "result"),
        ("camera.reference", "cam-001", "requested"), ("camera.reference", "cam-001", "result")]
    assert all(r.actor.startswith("Wang via api from 127.0.0.1") for r in rows)
    assert rows[1].detail["url"] == taken
    assert [(c, why) for c, _, why in seams.retaken] == [("cam-001", "a van at the east door")]
    assert json.dumps(rows[0].detail, ensure_ascii=False).count("a van at the east door") == 1
