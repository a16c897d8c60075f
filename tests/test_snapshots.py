"""Snapshots for alarms: an alert in a zone names a JPEG of each of that zone's cameras, from
the last keyframe, made after the alert; the files are served by the desk API, forwarded
as URLs, and removed past retention. No keyframe yet: no snapshot, no error."""

from __future__ import annotations

import os
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from gateway.alerts import Alert, AlertState, Severity
from gateway.config import RetentionConfig
from gateway.snapshots import KeyframeSource, Snapshots, ZoneCamera, encode_keyframe
from simulators.camera_clips import ClipSpec, load_clip
from simulators.cameras import CameraFarm
from tests.brokers import Mosquitto
from tests.harness import DeskSubscriber, detectors, running_gateway, write_site
from tests.test_camera_gateway import until


def keyframe(codec: str) -> bytes:
    clip = load_clip(ClipSpec(codec))
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in clip.frames[0])


def alert(zone: str, alert_id: str = "01JSNAPSHOTTESTALERT000001") -> Alert:
    return Alert(id=alert_id, key=f"fire.alarm:hd-01:{zone}", rule="fire.alarm",
                 source="hd-01", zone=zone, severity=Severity.CRITICAL,
                 state=AlertState.FIRING, raised_at=time.time(), cleared_at=None,
                 summary="fire", data={})


def test_a_keyframe_becomes_a_jpeg_of_its_picture() -> None:
    for codec in ("h264", "h265"):
        jpeg = encode_keyframe(codec.upper(), keyframe(codec))
        assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
        picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert picture.shape == (180, 320, 3)


def test_bytes_that_are_no_keyframe_give_no_jpeg() -> None:
    assert encode_keyframe("H264", b"\x00\x00\x00\x01" + os.urandom(500)) is None


async def test_only_cameras_with_a_keyframe_give_a_snapshot(tmp_path: Path) -> None:
    unit = keyframe("h264")
    taken: dict[str, tuple[str, bytes] | None] = {"cam-001": ("H264", unit), "cam-002": None}
    snaps = Snapshots(tmp_path / "snapshots", 30)
    snaps.bind([ZoneCamera("cam-001", "office"), ZoneCamera("cam-002", "office"),
                ZoneCamera("cam-003", "yard")],
               [KeyframeSource({c: (lambda c=c: taken[c]) for c in taken})])
    fire = alert("office")
    snaps.attach(fire)
    assert fire.data["snapshots"] == [
        {"camera": "cam-001", "url": f"/api/snapshots/{fire.id}/cam-001.jpg"}]
    await snaps.drain()
    assert sorted(p.name for p in (tmp_path / "snapshots" / fire.id).iterdir()) == ["cam-001.jpg"]
    assert snaps.written == 1 and snaps.failed == 0

    taken["cam-001"] = None  # no camera of the zone has a keyframe yet
    quiet = alert("office", "01JSNAPSHOTTESTALERT000002")
    snaps.attach(quiet)
    yard = alert("yard", "01JSNAPSHOTTESTALERT000003")  # its camera is unknown to the source
    snaps.attach(yard)
    unmapped = alert("roof", "01JSNAPSHOTTESTALERT000004")  # no camera in the zone
    snaps.attach(unmapped)
    await snaps.drain()
    assert "snapshots" not in quiet.data and "snapshots" not in yard.data
    assert "snapshots" not in unmapped.data
    assert snaps.failed == 0 and not (tmp_path / "snapshots" / quiet.id).exists()


async def test_an_undecodable_keyframe_is_counted_and_no_file(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path / "snapshots", 30)
    snaps.bind([ZoneCamera("cam-001", "office")],
               [KeyframeSource({"cam-001": lambda: ("H264", b"\x00\x00\x01" + b"\x65" * 40)})])
    fire = alert("office")
    snaps.attach(fire)
    await snaps.drain()
    assert snaps.failed == 1 and snaps.written == 0
    path = snaps.path(fire.id, "cam-001")
    assert path is not None and not path.exists()


async def test_a_snapshot_folder_that_cannot_be_written_is_counted_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    unit = keyframe("h264")
    root = tmp_path / "snapshots"
    root.write_text("not a folder")  # every write under it fails, as on a broken disk
    snaps = Snapshots(root, 30)
    snaps.bind([ZoneCamera("cam-001", "office"), ZoneCamera("cam-002", "office")],
               [KeyframeSource({"cam-001": lambda: ("H264", unit),
                                "cam-002": lambda: ("H264", unit)})])
    fire = alert("office")
    snaps.attach(fire)
    await snaps.drain()  # ends, and raises nothing
    assert len(fire.data["snapshots"]) == 2
    assert snaps.failed == 2 and snaps.written == 0


def test_retention_removes_old_snapshots_and_their_folders(tmp_path: Path) -> None:
    now = time.time()
    snaps = Snapshots(tmp_path / "snapshots", 7, wall=lambda: now)
    old, fresh = tmp_path / "snapshots" / "A1", tmp_path / "snapshots" / "B2"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "cam-001.jpg").write_bytes(b"\xff\xd8")
    (fresh / "cam-002.jpg").write_bytes(b"\xff\xd8")
    eight_days = now - 8 * 86400
    os.utime(old / "cam-001.jpg", (eight_days, eight_days))
    os.utime(fresh / "cam-002.jpg", (eight_days, eight_days))
    assert snaps.sweep() == 2
    assert not old.exists()
    assert sorted(p.name for p in fresh.iterdir()) == ["cam-001.jpg"]
    assert snaps.sweep() == 0


def test_names_that_are_not_ids_have_no_path(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path, 1)
    assert snaps.path("..", "cam-001") is None
    assert snaps.path("A1", "../../etc/passwd") is None
    assert snaps.path("A1", "cam-001") == tmp_path / "A1" / "cam-001.jpg"


async def test_a_fire_alert_carries_its_zones_snapshots(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    farm = CameraFarm.build(3, ClipSpec("h264"))
    async with farm:
        site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port))
        doc = yaml.safe_load(site.read_text())
        for cam, zone in zip(farm.cameras.values(), ("main-office-a", "main-office-a",
                                                     "main-drill"), strict=True):
            doc["devices"].append({"driver": "rtsp", "id": cam.id, "kind": "camera",
                                   "zone": zone, "address": cam.url, "picture_every_s": 1.0})
        site.write_text(yaml.safe_dump(doc, sort_keys=False))
        async with (running_gateway(site) as gw,
                    DeskSubscriber(mosquitto.host, mosquitto.port) as desk,
                    detectors(mosquitto.host, mosquitto.port) as hd):
            source = gw.snapshots.sources[0]
            await until(lambda: all(source.capture(c) is not None for c in farm.cameras))
            await hd.send("hd-01", 25.0)
            await hd.send("hd-01", 62.0, alarm=True)
            await until(lambda: any(a.source == "hd-01" for a in gw.book.active()))
            [fire] = [a for a in gw.book.active() if a.source == "hd-01"]
            assert fire.zone == "main-office-a"
            refs = fire.data["snapshots"]
            assert [r["camera"] for r in refs] == ["cam-001", "cam-002"]  # not the drill's
            await gw.snapshots.drain()
            base = f"http://127.0.0.1:{gw.http_port}"
            async with aiohttp.ClientSession() as http:
                for ref in refs:
                    async with http.get(base + ref["url"]) as r:
                        assert r.status == 200
                        assert r.headers["Content-Type"] == "image/jpeg"
                        body = await r.read()
                    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
                    assert picture.shape == (180, 320, 3)
                async with http.get(f"{base}/api/alerts/{fire.id}") as r:
                    assert (await r.json())["data"]["snapshots"] == refs
                async with http.get(f"{base}/api/snapshots/{fire.id}/cam-003.jpg") as r:
                    assert r.status == 404
            [stored] = [a for a in gw.store.active_alerts() if a.id == fire.id]
            assert stored.data["snapshots"] == refs
            await until(lambda: any(m.get("alert", {}).get("id") == fire.id
                                    for m in desk.messages))
            [sent] = [m for m in desk.messages if m.get("alert", {}).get("id") == fire.id]
            assert sent["alert"]["data"]["snapshots"] == refs


def test_the_site_file_keeps_snapshots_for_a_positive_number_of_days() -> None:
    assert RetentionConfig().snapshots_days == 30
    assert RetentionConfig(snapshots_days=7).snapshots_days == 7
    for bad in (0, -1, 100_000):
        with pytest.raises(ValidationError):
            RetentionConfig(snapshots_days=bad)
