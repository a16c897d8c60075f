"""The simulated cameras' ONVIF side read by clients nobody here wrote: onvif-zeep-async
(over real HTTP on loopback) for the device, media and PullPoint events, FFmpeg (PyAV) for
the stream URI it returns, OpenCV for the snapshot, wsdiscovery's message codec for
WS-Discovery. The simulator's own bookkeeping (subscriptions held) is checked alongside."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import cv2
import numpy as np
import pytest
import zeep.exceptions
from onvif import ONVIFCamera
from onvif.exceptions import ONVIFError
from wsdiscovery import QName, Scope
from wsdiscovery.actions import constructProbe
from wsdiscovery.message import createSOAPMessage, parseSOAPMessage

from gateway.config import load_site
from simulators.camera_clips import ClipSpec
from simulators.cameras import CameraFarm
from simulators.compound_cameras import CompoundCameras
from simulators.ws_discovery import DN, DiscoveryResponder

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "admin", "s3cret"


@pytest.fixture
async def farm() -> AsyncIterator[CameraFarm]:
    farm = CameraFarm.build(2, ClipSpec("h264"), username=USER, password=PASSWORD)
    async with farm:
        yield farm


async def _client(farm: CameraFarm, cam_id: str = "cam-001", password: str = PASSWORD,
                  **kwargs: Any) -> ONVIFCamera:
    client = ONVIFCamera("127.0.0.1", farm[cam_id].onvif.port, USER, password,
                         no_cache=True, **kwargs)
    await client.update_xaddrs()
    return client


async def _pull(service: Any, seconds: float = 2.0, limit: int = 50) -> list[Any]:
    reply = await service.PullMessages({"MessageLimit": limit,
                                        "Timeout": dt.timedelta(seconds=seconds)})
    return list(reply.NotificationMessage)


def _subcodes(fault: zeep.exceptions.Fault) -> list[str]:
    return [code.localname for code in fault.subcodes or []]


def _topics(notes: list[Any]) -> dict[str, tuple[str, str, str]]:
    """topic -> (source token, state, property operation), the latest per topic."""
    out = {}
    for note in notes:
        message = note.Message._value_1
        out[note.Topic._value_1] = (message.Source.SimpleItem[0].Value,
                                    message.Data.SimpleItem[0].Value,
                                    message.PropertyOperation)
    return out


async def test_device_information_and_a_drifting_clock(farm: CameraFarm) -> None:
    assert await farm.control("cam-002 clock_drift 300") == "ok"
    first, second = await _client(farm), await _client(farm, "cam-002", adjust_time=True)
    try:
        infos = []
        for client in (first, second):
            device = await client.create_devicemgmt_service()
            infos.append(await device.GetDeviceInformation())
        assert infos[0].SerialNumber == farm["cam-001"].onvif.serial
        assert infos[0].SerialNumber != infos[1].SerialNumber
        assert infos[0].HardwareId != infos[1].HardwareId
        assert all(info.Manufacturer and info.Model and info.FirmwareVersion
                   for info in infos)
        # The drift is what the client measures, and it compensates its tokens for it.
        assert second.dt_diff is not None
        assert abs(second.dt_diff.total_seconds() - 300) < 5
        device = await second.create_devicemgmt_service()
        utc = (await device.GetSystemDateAndTime()).UTCDateTime
        cam_time = dt.datetime(utc.Date.Year, utc.Date.Month, utc.Date.Day, utc.Time.Hour,
                               utc.Time.Minute, utc.Time.Second, tzinfo=dt.UTC)
        assert abs((cam_time - dt.datetime.now(dt.UTC)).total_seconds() - 300) < 5
        scopes = [s.ScopeItem for s in await device.GetScopes()]
        assert "onvif://www.onvif.org/name/cam-002" in scopes
        assert (await device.GetHostname()).Name == "cam-002"
        # Every address the camera gave is on its own host and port.
        base = farm["cam-001"].onvif.base_url
        assert first.xaddrs and all(x.startswith(base + "/") for x in first.xaddrs.values())
        # A camera that checks the token's time refuses a client that did not measure
        # the drift, and takes one that did.
        assert await farm.control("cam-002 token_window 10") == "ok"
        naive = ONVIFCamera("127.0.0.1", farm["cam-002"].onvif.port, USER, PASSWORD,
                            no_cache=True)
        try:
            with pytest.raises(zeep.exceptions.Fault) as fault:
                await naive.update_xaddrs()
            assert _subcodes(fault.value) == ["NotAuthorized"]
        finally:
            await naive.close()
        device = await second.create_devicemgmt_service()
        assert (await device.GetDeviceInformation()).SerialNumber == infos[1].SerialNumber
    finally:
        await first.close()
        await second.close()


def _play(url: str, packets: int) -> tuple[str, int]:
    container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=10)
    try:
        stream = container.streams.video[0]
        decoded = 0
        for n, packet in enumerate(container.demux(stream), 1):
            decoded += len(packet.decode())
            if n >= packets:
                break
        return stream.codec_context.name, decoded
    finally:
        container.close()


@pytest.mark.parametrize(("codec", "encoding", "name"), [("h264", "H264", "h264"),
                                                          ("h265", "H265", "hevc")])
async def test_profiles_stream_uri_and_snapshot(codec: str, encoding: str, name: str) -> None:
    farm = CameraFarm.build(1, ClipSpec(codec), username=USER, password=PASSWORD)
    async with farm:
        client = await _client(farm)
        try:
            media = await client.create_media_service()
            profiles = await media.GetProfiles()
            assert [p.token for p in profiles] == ["main", "sub"]
            assert {p.VideoEncoderConfiguration.Encoding for p in profiles} == {encoding}
            assert profiles[1].VideoEncoderConfiguration.Resolution.Width == 320
            uri = (await media.GetStreamUri({
                "ProfileToken": "sub",
                "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
            })).Uri
            assert uri == farm["cam-001"].url
            login = uri.replace("rtsp://", f"rtsp://{USER}:{PASSWORD}@")
            codec_name, decoded = await asyncio.to_thread(_play, login, 30)
            assert codec_name == name
            assert decoded >= 25
            # The snapshot: fetched by the client (HTTP Digest), a JPEG of the picture.
            jpeg = await client.get_snapshot("sub")
            assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
            picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert picture.shape == (180, 320, 3)
            assert await farm.control("cam-001 picture black") == "ok"
            client._snapshot_uris.clear()
            dark = await client.get_snapshot("main")
            assert dark is not None
            gray = cv2.imdecode(np.frombuffer(dark, np.uint8), cv2.IMREAD_GRAYSCALE)
            assert gray.mean() < 30 < float(cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY).mean())
        finally:
            await client.close()


async def test_pullpoint_events_from_the_picture_renew_and_unsubscribe(
        farm: CameraFarm) -> None:
    cam = farm["cam-001"]
    client = await _client(farm)
    lost: list[int] = []
    try:
        manager = await client.create_pullpoint_manager(dt.timedelta(seconds=60),
                                                        lambda: lost.append(1))
        assert cam.onvif.subscriptions == 1
        pullpoint = manager.get_service()
        initial = _topics(await _pull(pullpoint))
        assert initial["tns1:VideoSource/ImageTooDark/ImagingService"] == (
            "VideoSourceConfig_1", "false", "Initialized")
        assert len(initial) == 5
        # Black is too dark; covered is a scene change and a tamper; motion by hand.
        assert await farm.control("cam-001 picture black") == "ok"
        assert _topics(await _pull(pullpoint)) == {
            "tns1:VideoSource/ImageTooDark/ImagingService": (
                "VideoSourceConfig_1", "true", "Changed")}
        assert await farm.control("cam-001 picture covered") == "ok"
        assert await farm.control("cam-001 motion on") == "ok"
        changed = _topics(await _pull(pullpoint))
        assert {topic: state for topic, (_, state, _) in changed.items()} == {
            "tns1:VideoSource/ImageTooDark/ImagingService": "false",
            "tns1:VideoSource/GlobalSceneChange/ImagingService": "true",
            "tns1:RuleEngine/TamperDetector/Tamper": "true",
            "tns1:VideoSource/MotionAlarm": "true"}
        # A long poll with nothing to say waits for an event, and ends when it comes.
        waiting = asyncio.ensure_future(_pull(pullpoint, seconds=20))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert await farm.control("cam-001 picture blurred") == "ok"
        got = _topics(await asyncio.wait_for(waiting, 5))
        assert got["tns1:VideoSource/ImageTooBlurry/ImagingService"][1] == "true"
        await manager.set_synchronization_point()
        assert len(_topics(await _pull(pullpoint))) == 5
        # Renew moves the termination time on; a stop unsubscribes.
        subscription = await client.create_subscription_service("PullPointSubscription")
        renewed = await subscription.Renew("PT600S")
        assert (renewed.TerminationTime - renewed.CurrentTime).total_seconds() == 600
        await manager.shutdown()
        assert cam.onvif.subscriptions == 0
        assert cam.onvif.events.unsubscribed == 1
        assert lost == []
    finally:
        await client.close()


async def test_a_subscription_not_renewed_expires(farm: CameraFarm) -> None:
    client = await _client(farm)
    try:
        events = await client.create_events_service()
        reply = await events.CreatePullPointSubscription({"InitialTerminationTime": "PT1S"})
        assert farm["cam-001"].onvif.subscriptions == 1
        client.xaddrs["http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"] = (
            reply.SubscriptionReference.Address._value_1)
        pullpoint = await client.create_pullpoint_service()
        assert len(await _pull(pullpoint, seconds=5)) == 5  # the initial states, at once
        assert await _pull(pullpoint, seconds=5) == []  # the poll ends with the subscription
        await asyncio.sleep(0.1)
        assert farm["cam-001"].onvif.subscriptions == 0
        assert farm["cam-001"].onvif.events.expired == 1
        with pytest.raises(zeep.exceptions.Fault):
            await _pull(pullpoint)
    finally:
        await client.close()


async def test_a_reboot_loses_subscriptions_and_comes_back(farm: CameraFarm) -> None:
    cam = farm["cam-001"]
    client = await _client(farm)
    try:
        manager = await client.create_pullpoint_manager(dt.timedelta(seconds=60), lambda: None)
        pullpoint = manager.get_service()
        await _pull(pullpoint)
        assert (await farm.control("cam-001 reboot soon")).startswith("error")
        assert await farm.control("cam-001 reboot 0.5") == "ok"
        assert cam.onvif.subscriptions == 0
        await asyncio.sleep(0.05)
        for port in (cam.port, cam.onvif.port):
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
        status = json.loads(await farm.control("cam-001 status"))["cam-001"]
        assert status["rebooting"] is True
        for _ in range(100):
            if not cam.rebooting and cam.onvif.running:
                break
            await asyncio.sleep(0.05)
        with pytest.raises(zeep.exceptions.Fault) as fault:
            await _pull(pullpoint)
        assert _subcodes(fault.value) == ["ResourceUnknownFault"]
        _, writer = await asyncio.open_connection("127.0.0.1", cam.port)  # RTSP is back
        writer.close()
        await writer.wait_closed()
        await manager.shutdown()  # its Unsubscribe is refused: best effort, as on a camera
        again = await client.create_pullpoint_manager(dt.timedelta(seconds=60), lambda: None)
        assert cam.onvif.subscriptions == 1
        await again.shutdown()
        assert cam.onvif.subscriptions == 0
    finally:
        await client.close()


async def test_a_wrong_password_is_not_authorized(farm: CameraFarm) -> None:
    client = ONVIFCamera("127.0.0.1", farm["cam-001"].onvif.port, USER, "wrong",
                         no_cache=True)
    try:
        device = await client.create_devicemgmt_service()
        with pytest.raises(zeep.exceptions.Fault) as fault:
            await device.GetDeviceInformation()
        assert _subcodes(fault.value) == ["NotAuthorized"]
        assert (await device.GetSystemDateAndTime()).UTCDateTime.Date.Year >= 2026
        assert farm["cam-001"].onvif.refused_logins == 1
        with pytest.raises((zeep.exceptions.Fault, ONVIFError)):
            await client.update_xaddrs()
    finally:
        await client.close()
    assert await farm.control("cam-002 auth_fail on") == "ok"
    refused = ONVIFCamera("127.0.0.1", farm["cam-002"].onvif.port, USER, PASSWORD,
                          no_cache=True)
    try:
        with pytest.raises((zeep.exceptions.Fault, ONVIFError)):
            await refused.update_xaddrs()
    finally:
        await refused.close()


@pytest.mark.parametrize(("mode", "error"), [
    ("malformed", zeep.exceptions.TransportError),
    ("fault", zeep.exceptions.Fault),
    ("down", (ONVIFError, aiohttp.ClientError)),  # the kept-alive connection is cut too
])
async def test_onvif_faults_by_control_line(
        farm: CameraFarm, mode: str, error: type[Exception] | tuple[type[Exception], ...]
) -> None:
    client = await _client(farm)
    try:
        device = await client.create_devicemgmt_service()
        assert await farm.control(f"cam-001 onvif {mode}") == "ok"
        with pytest.raises(error):
            await device.GetDeviceInformation()
        if mode == "down":
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", farm["cam-001"].onvif.port)
        assert await farm.control("cam-001 onvif ok") == "ok"
        assert (await device.GetDeviceInformation()).SerialNumber == farm[
            "cam-001"].onvif.serial
    finally:
        await client.close()
    assert (await farm.control("cam-001 onvif melted")).startswith("error: no onvif mode")


async def test_a_request_that_is_not_soap_gets_a_fault_and_is_counted(
        farm: CameraFarm) -> None:
    url = farm["cam-001"].onvif.device_url
    async with aiohttp.ClientSession() as session:
        for body in (b"not xml at all", b"<e:Envelope xmlns:e='urn:x'/>"):
            async with session.post(url, data=body) as reply:
                assert reply.status == 400
                text = await reply.text()
        assert "ter:WellFormed" in text and "<env:Fault>" in text
    assert farm["cam-001"].onvif.bad_requests == 2
    status = json.loads(await farm.control("cam-001 status"))["cam-001"]
    assert status["bad_requests"] == 2 and status["onvif_listening"] is True


async def test_a_truncated_reply_reads_as_incomplete(farm: CameraFarm) -> None:
    """zeep recovers what it can of a reply cut off half way, without an error: the
    fields after the cut are simply missing (a client has to check what it needs)."""
    client = await _client(farm)
    try:
        device = await client.create_devicemgmt_service()
        media = await client.create_media_service()
        assert await farm.control("cam-001 onvif truncated") == "ok"
        info = await device.GetDeviceInformation()
        assert info.Manufacturer == farm["cam-001"].onvif.manufacturer
        assert info.SerialNumber is None
        assert [p.token for p in await media.GetProfiles()] == ["main"]
    finally:
        await client.close()
    assert (await farm.control("cam-001 clock_drift soon")).startswith("error")


def _probe_exchange(port: int, scopes: list[Scope] | None = None) -> list[Any]:
    """A Probe built and the ProbeMatches read by the wsdiscovery package, over a UDP
    socket on loopback (its own networking would bind every interface's 3702)."""
    env = constructProbe([QName(DN, "NetworkVideoTransmitter", "dn")], scopes or [])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)  # every answer is sent at once, on loopback
        sock.sendto(createSOAPMessage(env).encode(), ("127.0.0.1", port))
        found = []
        try:
            while True:
                data, _ = sock.recvfrom(65536)
                reply = parseSOAPMessage(data, "127.0.0.1")
                assert reply is not None and reply.getRelatesTo() == env.getMessageId()
                found += reply.getProbeResolveMatches()
        except TimeoutError:
            return found


async def test_ws_discovery_answers_a_probe_for_every_camera(farm: CameraFarm) -> None:
    farm["cam-002"].location = "main-gatehouse"
    async with DiscoveryResponder(farm.endpoints) as responder:
        matches = await asyncio.to_thread(_probe_exchange, responder.port)
        xaddrs = sorted(x for m in matches for x in m.getXAddrs())
        assert xaddrs == sorted(c.onvif.device_url for c in farm.cameras.values())
        scopes = {str(s) for m in matches for s in m.getScopes()}
        assert "onvif://www.onvif.org/name/cam-002" in scopes
        gatehouse = await asyncio.to_thread(
            _probe_exchange, responder.port,
            [Scope("onvif://www.onvif.org/location/main-gatehouse")])
        assert [x for m in gatehouse for x in m.getXAddrs()] == [
            farm["cam-002"].onvif.device_url]
        await farm.control("cam-001 onvif down")
        assert len(await asyncio.to_thread(_probe_exchange, responder.port)) == 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"<not a probe", ("127.0.0.1", responder.port))
        for _ in range(50):
            if responder.rejected:
                break
            await asyncio.sleep(0.01)
        assert responder.rejected == 1


async def test_the_demo_cameras_have_onvif_and_are_discovered() -> None:
    site = load_site(ROOT / "config" / "site.yaml")
    cams = await CompoundCameras.start(site, count=2)
    try:
        assert cams.discovery is not None
        entries = [d for d in cams.site.devices_of("rtsp") if d.enabled]
        assert [e.onvif for e in entries] == [
            cams.farm[e.id].onvif.device_url for e in entries]
        matches = await asyncio.to_thread(_probe_exchange, cams.discovery.port)
        scopes = {str(s) for m in matches for s in m.getScopes()}
        assert {f"onvif://www.onvif.org/location/{e.zone}" for e in entries} <= scopes
    finally:
        await cams.stop()


def test_the_simulator_process_prints_onvif_and_discovery() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "simulators.cameras", "--count", "2"],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        lines = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert [line.get("id") for line in lines[:2]] == ["cam-001", "cam-002"]
        assert all(line["onvif"].startswith("http://127.0.0.1:") for line in lines[:2])
        assert lines[2]["ready"] == 2 and lines[2]["discovery"] > 0
        matches = _probe_exchange(lines[2]["discovery"])
        assert len(matches) == 2
        proc.stdin.write("cam-002 status\n")
        proc.stdin.flush()
        status = json.loads(proc.stdout.readline())
        assert status["status"]["cam-002"]["subscriptions"] == 0
    finally:
        proc.terminate()
        proc.wait(10)
