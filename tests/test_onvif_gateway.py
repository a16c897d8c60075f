"""ONVIF in the running gateway, against simulated cameras over real sockets: the device
information is committed, a drifting clock raises its alert and clears it, a camera's own
tamper event is an alert whose snapshot comes from the ONVIF snapshot URI (and from the
last keyframe for a camera whose ONVIF is down), the gauges show it, and stopping the
daemon leaves no subscription behind (nor does a session lost while the camera was
unreachable: the next one gives it back). `cameras discover` prints entries the site-file
loader accepts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from drivers.onvif.driver import Timing
from drivers.onvif.snapshot import OnvifSnapshotSource
from gateway.app import Gateway, Overrides
from gateway.config import load_site
from gateway.supervisor import LinkState
from simulators.camera_clips import ClipSpec
from simulators.cameras import CameraFarm
from simulators.ws_discovery import DiscoveryResponder
from tests.brokers import Mosquitto
from tests.harness import ROOT, write_site
from tests.test_camera_gateway import sample, scrape, until

FAST = Timing(answer_s=2.0, lifetime_s=4.0, poll_s=0.3, time_every_s=0.5,
              unsubscribe_s=1.0)


def with_onvif_cameras(site: Path, farm: CameraFarm) -> Path:
    doc = yaml.safe_load(site.read_text())
    doc["rules"]["cameras"] = {"clock_drift_max_s": 30}
    for cam in farm.cameras.values():
        doc["devices"].append({
            "driver": "rtsp", "id": cam.id, "kind": "camera", "zone": "main-office-a",
            "address": cam.url, "onvif": cam.onvif.device_url, "username": "viewer",
            "password": {"env": "TEST_CAMERA_PASSWORD"}, "picture_every_s": 1})
    site.write_text(yaml.safe_dump(doc, sort_keys=False))
    return site


@contextlib.asynccontextmanager
async def gateway_with(site_path: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(load_site(site_path), site_path,
                 overrides=Overrides(http_port=0, onvif_timing=FAST))
    task = asyncio.create_task(gw.run(), name="gateway-under-test")
    try:
        async with asyncio.timeout(15):
            await gw.ready.wait()
            while any(s.state.value != "up" for s in gw.supervisors):
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield gw
    finally:
        gw.request_shutdown()
        async with asyncio.timeout(10):
            await task


def link(gw: Gateway, name: str) -> LinkState:
    return next(s.state for s in gw.supervisors if s.name == name)


def active(gw: Gateway) -> set[str]:
    return {a.key for a in gw.book.active()}


async def status(farm: CameraFarm, camera: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(await farm.control(f"{camera} status"))[camera]
    return found


SECRET = "Vq7-onvif-secret"


async def test_onvif_in_the_gateway(tmp_path: Path, mosquitto: Mosquitto,
                                    monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_CAMERA_PASSWORD", SECRET)
    farm = CameraFarm.build(2, ClipSpec("h264"), username="viewer", password=SECRET)
    async with farm:
        site = with_onvif_cameras(
            write_site(tmp_path, devices=(mosquitto.host, mosquitto.port)), farm)
        async with gateway_with(site) as gw:
            assert {"onvif:cam-001", "onvif:cam-002"} <= {s.name for s in gw.supervisors}
            await until(lambda: bool(gw.store.events_for("cam-001", "camera.onvif.info")))
            [info] = gw.store.events_for("cam-001", "camera.onvif.info")
            assert info["data"]["model"] == farm["cam-001"].onvif.model
            page = await scrape(gw)
            assert sample(page, "gateway_camera_onvif_up", "cam-001") == 1.0
            cam2 = farm["cam-002"].onvif
            assert (f'gateway_camera_info{{camera="cam-002",firmware="{cam2.firmware}",'
                    f'manufacturer="{cam2.manufacturer}",model="{cam2.model}",'
                    'zone="main-office-a"} 1.0') in page

            # The camera's clock drifts two minutes ahead: an alert; set right: cleared.
            assert await farm.control("cam-001 clock_drift 120") == "ok"
            await until(lambda: "camera.clock_drift:cam-001" in active(gw))
            drift = sample(await scrape(gw), "gateway_camera_clock_drift_seconds", "cam-001")
            assert drift == pytest.approx(120, abs=2)
            assert await farm.control("cam-001 clock_drift 0") == "ok"
            await until(lambda: "camera.clock_drift:cam-001" not in active(gw))

            # cam-001's ONVIF goes down; cam-002 is covered: its tamper event is an alert,
            # with a snapshot of each camera of the zone.
            keyframes = {s.name: s.driver for s in gw.supervisors if s.name.startswith("cam")}
            await until(lambda: all(d.last_keyframe() is not None  # type: ignore[attr-defined]
                                    for d in keyframes.values()))
            assert await farm.control("cam-001 onvif down") == "ok"
            await until(lambda: link(gw, "onvif:cam-001") is LinkState.DOWN)
            assert sample(await scrape(gw), "gateway_camera_onvif_up", "cam-001") == 0.0
            assert await farm.control("cam-002 picture covered") == "ok"
            await until(lambda: "camera.tampering:cam-002" in active(gw))
            alert = next(a for a in gw.book.active() if a.key == "camera.tampering:cam-002")
            assert alert.zone == "main-office-a"
            assert {s["camera"] for s in alert.data["snapshots"]} == {"cam-001", "cam-002"}
            await gw.snapshots.drain()
            for camera in ("cam-001", "cam-002"):
                path = gw.snapshots.path(alert.id, camera)
                assert path is not None and path.read_bytes()[:2] == b"\xff\xd8", camera
            onvif = gw.snapshots.sources[0]
            assert isinstance(onvif, OnvifSnapshotSource)
            assert onvif.fetched >= 1  # cam-002's, from its snapshot URI
            assert onvif.failed >= 1  # cam-001's: the keyframe stood in
            assert farm["cam-002"].onvif.requests.get("GetSnapshotUri", 0) >= 1

            assert await farm.control("cam-001 onvif ok") == "ok"
            await until(lambda: link(gw, "onvif:cam-001") is LinkState.UP)
            # The subscription the lost session could not give back went first.
            assert gw.onvif_monitors["cam-001"].stale_given_back == 1
            for camera in ("cam-001", "cam-002"):
                assert (await status(farm, camera))["subscriptions"] == 1
        # Stopped: the cameras hold no subscription of ours.
        for camera in ("cam-001", "cam-002"):
            st = await status(farm, camera)
            assert st["subscriptions"] == 0 and st["expired"] == 0, (camera, st)
    # The login was used on every call, and is in no log line nor any stored event.
    assert farm["cam-001"].onvif.refused_logins == 0
    assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in (tmp_path / "data" / "gateway.db").read_bytes().decode("latin-1")


async def test_discover_prints_entries_the_site_file_takes(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    farm = CameraFarm.build(3, ClipSpec("h264"), username="viewer", password="pw")
    async with farm:
        for cam in farm.cameras.values():
            cam.location = "main-office-a"
        responder = DiscoveryResponder(farm.endpoints)
        await responder.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "cameras", "discover", "--timeout", "1",
                "--target", f"127.0.0.1:{responder.port}", "--username", "viewer",
                cwd=ROOT, env={**os.environ, "CAM_PASSWORD": "pw"},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            responder.stop()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "pw" not in text.replace("password", "")
    listed = yaml.safe_load(text)
    assert sorted(e["id"] for e in listed) == ["cam-001", "cam-002", "cam-003"]
    by_id = {e["id"]: e for e in listed}
    cam = farm["cam-002"]
    assert by_id["cam-002"] == {
        "driver": "rtsp", "id": "cam-002", "kind": "camera", "zone": "main-office-a",
        "address": cam.onvif.stream_url("sub"), "onvif": cam.onvif.device_url,
        "username": "viewer", "password": {"env": "CAM_PASSWORD"}}
    assert f"# {cam.onvif.manufacturer} {cam.onvif.model}" in text

    site = write_site(tmp_path, devices=(mosquitto.host, mosquitto.port))
    doc = yaml.safe_load(site.read_text())
    doc["devices"] += listed
    site.write_text(yaml.safe_dump(doc, sort_keys=False))
    loaded = load_site(site)
    assert [d.id for d in loaded.devices_of("rtsp")] == [e["id"] for e in listed]
