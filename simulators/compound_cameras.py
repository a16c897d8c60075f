"""The site's cameras, simulated for the demo: the first N camera entries of the site file
(enabled or not) served by simulated cameras (RTSP and ONVIF) on free loopback ports, and
the site's entries pointed at them (`address` and `onvif`) and switched on; one
WS-Discovery responder on a free loopback UDP port (`discovery.port`) tells of them. The
real site file is not changed."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import CameraDevice, Site
from simulators.camera_clips import ClipSpec
from simulators.cameras import Camera, CameraFarm, Stream
from simulators.ws_discovery import DiscoveryResponder

DEMO_CAMERAS = 10
# A small sub-stream: 100 of these stay at a few percent of one core.
DEMO_CLIP = ClipSpec("h264", width=320, height=180, fps=10, seconds=2, bitrate=128_000)


@dataclass
class CompoundCameras:
    site: Site  # the site file with the demo's cameras on loopback and enabled
    farm: CameraFarm
    discovery: DiscoveryResponder | None = field(default=None)

    @classmethod
    async def start(cls, site: Site, count: int = DEMO_CAMERAS,
                    spec: ClipSpec = DEMO_CLIP) -> CompoundCameras:
        entries = site.devices_of("rtsp", include_disabled=True)[:max(0, count)]
        stream = Stream.of(spec)  # encoded once, cached for the next start
        farm = CameraFarm([Camera(entry.id, stream, location=entry.zone) for entry in entries])
        await farm.__aenter__()
        moved: dict[str, CameraDevice] = {
            entry.id: entry.model_copy(update={
                "address": farm[entry.id].url, "enabled": True,
                "username": None, "password": None,
                "onvif": farm[entry.id].onvif.device_url})
            for entry in entries}
        devices = [moved.get(d.id, d) for d in site.devices]
        discovery = DiscoveryResponder(farm.endpoints)
        await discovery.start()
        return cls(site.model_copy(update={"devices": devices}), farm, discovery)

    async def stop(self) -> None:
        if self.discovery is not None:
            self.discovery.stop()
        await self.farm.__aexit__(None, None, None)
