"""The cameras at the desk, over real HTTP against a running gateway watching simulated
cameras: a camera turned away is a `camera.picture_moved` alert and a picture gauge until
the operator re-takes its reference; a snapshot of one camera is taken on demand, stored
with the alarms' and served at its URL; both actions are audited under the operator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.alerts import AlertBook
from gateway.api.app import make_app
from gateway.api.cameras import DeskCamera, add_camera_routes
from gateway.api.snapshots import add_snapshot_routes
from gateway.cli import main
from gateway.clock import SystemClock
from gateway.errors import StoreFailed
from gateway.metrics import Metrics
from gateway.snapshots import Job, KeyframeSource, Snapshots, ZoneCamera
from gateway.store import AuditRow
from simulators.camera_clips import ClipSpec, load_clip
from simulators.cameras import CameraFarm
from tests.brokers import Mosquitto
from tests.harness import running_gateway, write_site
from tests.test_api import served
from tests.test_camera_gateway import scrape, until, with_cameras


async def post(base: str, path: str, doc: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(base + path, json=doc) as r:
        return r.status, await r.json()


def audit(db: Path, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    with contextlib.closing(sqlite3.connect(db)) as c:
        rows = c.execute("SELECT actor, target, detail FROM audit WHERE action = ? ORDER BY id",
                         (action,)).fetchall()
    return [(a, t, json.loads(d)) for a, t, d in rows]


def picture_gauge(page: str, camera: str) -> dict[str, float]:
    found = re.findall(
        rf'^gateway_camera_picture{{camera="{camera}",state="(\w+)",zone="main-office-a"}}'
        r" (\S+)$", page, re.M)
    found += re.findall(
        rf'^gateway_camera_picture{{camera="{camera}",zone="main-office-a",state="(\w+)"}}'
        r" (\S+)$", page, re.M)
    return {state: float(v) for state, v in found}


async def test_a_moved_camera_until_its_reference_is_retaken_and_a_snapshot_on_demand(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    farm = CameraFarm.build(2, ClipSpec("h264"))
    async with farm:
        site = with_cameras(write_site(tmp_path, devices=(mosquitto.host, mosquitto.port)),
                            farm, login=False, picture_every_s=1.0)
        async with running_gateway(site) as gw:
            api = f"http://127.0.0.1:{gw.http_port}"
            # The baselines and references (three good pictures), then one judged by it.
            await until(lambda: all(c.picture()[1] is not None
                                    for c in gw.desk_cameras.values()))
            async with aiohttp.ClientSession() as s, s.get(api + "/api/cameras") as r:
                listed = (await r.json())["cameras"]
            assert [(c["id"], c["picture"]) for c in listed] == [("cam-001", "ok"),
                                                                 ("cam-002", "ok")]
            assert listed[0]["likeness"] > 0.5

            assert await farm.control("cam-001 picture moved") == "ok"
            await until(lambda: [a.key for a in gw.book.active()] == [
                "camera.picture_moved:cam-001"])
            await until(lambda: len(gw.store.events_for("cam-001", "camera.image.moved")) > 0)
            [event] = gw.store.events_for("cam-001", "camera.image.moved")
            assert event["data"]["likeness"] < 0.5
            gauge = picture_gauge(await scrape(gw), "cam-001")
            assert gauge["moved"] == 1.0 and gauge["ok"] == 0.0 and len(gauge) == 7

            # No reason: refused, nothing done.
            status, body = await post(api, "/api/cameras/cam-001/reference",
                                      {"operator": "Wang"})
            assert (status, body) == (400, {"error": "reason is required (a non-empty string)"})
            # The camera was re-aimed on purpose: its new view is the reference.
            status, body = await post(api, "/api/cameras/cam-001/reference",
                                      {"operator": "Wang", "reason": "re-aimed at the gate"})
            assert (status, body) == (200, {"camera": "cam-001", "picture": "ok"})
            await until(lambda: gw.book.active() == [])
            # Newest first: the retaken reference's ok, after the first word at start.
            await until(lambda: len(gw.store.events_for("cam-001", "camera.image.ok")) == 2)
            cleared = gw.store.events_for("cam-001", "camera.image.ok")[0]
            assert cleared["data"]["reference"] == "retaken"
            assert cleared["data"]["who"].startswith("Wang via api from 127.0.0.1")
            await asyncio.sleep(2.5)  # more pictures of the new view: it stays ok
            assert gw.book.active() == []

            status, body = await post(api, "/api/cameras/cam-002/snapshot",
                                      {"operator": "Wang", "reason": "a van at the door"})
            assert status == 201 and body["fresh"] is True
            assert re.fullmatch(r"/api/snapshots/[0-9A-Z]{26}/cam-002\.jpg", body["url"])
            async with aiohttp.ClientSession() as s, s.get(api + body["url"]) as r:
                assert r.status == 200 and r.content_type == "image/jpeg"
                assert (await r.read())[:2] == b"\xff\xd8"
            status, _ = await post(api, "/api/cameras/cam-009/snapshot",
                                   {"operator": "Wang", "reason": "x"})
            assert status == 404

            db = gw.db_path
            assert [(t, d["stage"]) for _, t, d in audit(db, "camera.reference")] == [
                ("cam-001", "requested"), ("cam-001", "result")]
            snaps = audit(db, "camera.snapshot")
            assert [(t, d["stage"]) for _, t, d in snaps] == [("cam-002", "requested"),
                                                              ("cam-002", "result")]
            assert snaps[1][2]["url"] == body["url"]
            assert snaps[0][0].startswith("Wang via api") and snaps[0][2]["why"] == (
                "a van at the door")


def desk_camera(refresh: bool) -> DeskCamera:
    async def fresh(timeout_s: float) -> bool:
        return refresh

    async def retake(who: str, why: str) -> object:
        return "ok"

    return DeskCamera("cam-001", "gate", lambda: "down", lambda: ("ok", None), fresh, retake)


class NoPicture:
    name = "none"

    def capture(self, camera: str) -> Job | None:
        return None


async def test_a_camera_without_a_picture_or_an_audit_is_refused(tmp_path: Path) -> None:
    snapshots = Snapshots(tmp_path / "snapshots", 30)
    snapshots.bind([ZoneCamera("cam-001", "gate")], [NoPicture()])
    rows: list[AuditRow] = []
    store_ok = True

    async def keep(row: AuditRow) -> None:
        if not store_ok:
            raise StoreFailed("disk full")
        rows.append(row)

    app = make_app(book=AlertBook(), metrics=Metrics(), health=lambda: {"status": "ok"})
    add_camera_routes(app, lambda: {"cam-001": desk_camera(False)}, snapshots, keep,
                      SystemClock())
    async with served(app) as (base, _):
        body = {"operator": "Li", "reason": "check the yard"}
        # Down, never sent a keyframe: no picture, said so, and the audit tells it.
        assert await post(base, "/api/cameras/cam-001/snapshot", body) == (
            503, {"camera": "cam-001", "error": "no picture: the camera has sent no keyframe"})
        assert [(r.action, r.detail["stage"], r.detail.get("url")) for r in rows] == [
            ("camera.snapshot", "requested", None), ("camera.snapshot", "result", None)]
        assert snapshots.failed == 1
        for bad in ([1, 2], {"operator": "Li"}, {"operator": " ", "reason": "x"}):
            status, _ = await post(base, "/api/cameras/cam-001/snapshot", bad)
            assert status == 400
        async with aiohttp.ClientSession() as s, s.post(
                base + "/api/cameras/cam-001/snapshot", data=b"x" * 5000) as r:
            assert r.status == 400
        # A store that cannot write the audit: nothing is done.
        store_ok = False
        status, answer = await post(base, "/api/cameras/cam-001/reference", body)
        assert status == 503 and "not audited" in answer["error"]
        assert len(rows) == 2


async def test_the_command_line_asks_the_running_gateway(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = load_clip(ClipSpec("h264"))
    keyframe = b"".join(b"\x00\x00\x00\x01" + nal for nal in clip.frames[0])
    snapshots = Snapshots(tmp_path / "snapshots", 30)
    snapshots.bind([ZoneCamera("cam-001", "gate")],
                   [KeyframeSource({"cam-001": lambda: ("H264", keyframe)})])
    rows: list[AuditRow] = []

    async def keep(row: AuditRow) -> None:
        rows.append(row)

    app = make_app(book=AlertBook(), metrics=Metrics(), health=lambda: {"status": "ok"})
    add_snapshot_routes(app, snapshots)
    add_camera_routes(app, lambda: {"cam-001": desk_camera(True)}, snapshots, keep,
                      SystemClock())
    async with served(app) as (base, _):
        said = await asyncio.to_thread(main, [
            "cameras", "snapshot", "cam-001", "--reason", "the yard at night",
            "--operator", "Li", "--api", base])
        out = json.loads(capsys.readouterr().out)
        assert said == 0 and out["camera"] == "cam-001" and out["fresh"] is True
        assert out["url"].startswith(base + "/api/snapshots/")
        async with aiohttp.ClientSession() as s, s.get(out["url"]) as r:
            assert r.status == 200 and (await r.read())[:2] == b"\xff\xd8"
        said = await asyncio.to_thread(main, [
            "cameras", "reference", "cam-002", "--reason", "x", "--api", base])
        assert said == 1 and "404 no camera cam-002" in capsys.readouterr().err
    assert [(r.actor, r.action, r.detail["stage"]) for r in rows] == [
        ("Li (cli) via api from 127.0.0.1", "camera.snapshot", "requested"),
        ("Li (cli) via api from 127.0.0.1", "camera.snapshot", "result")]
    # Nobody answering is said plainly.
    assert main(["cameras", "snapshot", "cam-001", "--reason", "x", "--api", base]) == 1
    assert "did not answer" in capsys.readouterr().err
