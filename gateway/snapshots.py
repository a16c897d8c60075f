"""Snapshots for alarms: every alert raised in a zone names a snapshot of each camera mapped
to that zone, and the JPEG is made off the hot path.

The alert never waits for a picture. When the pipeline raises an alert, `attach` (cheap:
no decoding, no disk) asks each camera's sources whether they can give a picture, and
captures what they need at that moment (the keyframe bytes). The alert's data then gets
`snapshots: [{camera, url}]` before it is committed, so the store, the API and the
forwarded payload all carry the same references. The URLs are fixed in advance
(`/api/snapshots/<alert id>/<camera>.jpg`). The JPEG is encoded in a worker thread
afterwards and written under the data directory; until it is there, or if every source
failed, the URL answers 404.

Sources are tried in order, first picture wins: the seam is `SnapshotSource`. The
camera's ONVIF snapshot URI (drivers.onvif.snapshot) goes before the last cached keyframe.
Files older than `retention.snapshots_days` are removed after each write and at start.

A snapshot on demand (`take`: one camera, now, asked for at the desk) goes through the
same sources and is kept the same way, under an id of its own in place of an alert's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from gateway.alerts import Alert
from gateway.events import new_id
from gateway.tasks import log_failure

log = logging.getLogger(__name__)

URL_PREFIX: Final = "/api/snapshots"
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Encodes waiting beyond this are given up (counted): an alarm storm must not queue
# pictures without end behind the fire.
MAX_PENDING: Final = 64
JPEG_QUALITY: Final = 85

Job = Callable[[], Awaitable[bytes | None]]  # makes one JPEG, or None


class SnapshotSource(Protocol):
    """Where a camera's picture can come from. `capture` runs on the hot path: it must not
    block, only take what it needs now and return the job that makes the JPEG later (None:
    this source has no picture of that camera)."""

    name: str

    def capture(self, camera: str) -> Job | None: ...


@dataclass(frozen=True, slots=True)
class ZoneCamera:
    camera: str
    zone: str


def encode_keyframe(codec: str, access_unit: bytes, quality: int = JPEG_QUALITY) -> bytes | None:
    """One Annex B keyframe (H.264 or H.265) as a JPEG, or None if it does not decode.
    A decoder of its own: this runs in a worker thread, beside the monitors' shared one."""
    import av  # the camera extra
    import cv2

    ctx = av.CodecContext.create("h264" if codec.upper() == "H264" else "hevc", "r")
    ctx.thread_count = 1
    try:
        frames = ctx.decode(av.Packet(access_unit))
        if not frames:
            frames = ctx.decode(None)
    except av.error.FFmpegError:
        return None
    if not frames:
        return None
    picture: Any = frames[-1].to_ndarray(format="bgr24")
    ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(jpeg.tobytes()) if ok else None


class KeyframeSource:
    """The last keyframe each camera's monitor took (`CameraDriver.keyframe`)."""

    name = "keyframe"

    def __init__(self, keyframes: dict[str, Callable[[], tuple[str, bytes] | None]]) -> None:
        self._keyframes = keyframes  # camera -> (codec, access unit) or None

    def capture(self, camera: str) -> Job | None:
        get = self._keyframes.get(camera)
        taken = get() if get is not None else None
        if taken is None:
            return None  # no keyframe yet: no snapshot from here
        codec, unit = taken

        async def job() -> bytes | None:
            return await asyncio.to_thread(encode_keyframe, codec, unit)

        return job


class Snapshots:
    """The zone-to-camera map, the sources, and the files under `root`."""

    def __init__(self, root: Path, retention_days: float, *,
                 wall: Callable[[], float] = time.time) -> None:
        self.root = root
        self.retention_s = retention_days * 86400.0
        self._wall = wall
        self._zones: dict[str, list[str]] = {}
        self._cameras: set[str] = set()
        self.sources: list[SnapshotSource] = []  # tried in order
        self._tasks: set[asyncio.Task[None]] = set()
        self.written = 0
        self.failed = 0  # every source gave nothing for a listed camera
        self.skipped = 0  # given up: too many pending
        self.removed = 0  # files past retention

    def bind(self, cameras: Iterable[ZoneCamera], sources: Sequence[SnapshotSource]) -> None:
        """The cameras and sources of the running core (swapped on a rebuild)."""
        zones: dict[str, list[str]] = {}
        for cam in cameras:
            zones.setdefault(cam.zone, []).append(cam.camera)
        self._zones = zones
        self._cameras = {c for cams in zones.values() for c in cams}
        self.sources = list(sources)
        self.sweep()

    def cameras_of(self, zone: str) -> list[str]:
        return list(self._zones.get(zone, ()))

    def knows(self, camera: str) -> bool:
        return camera in self._cameras

    async def take(self, camera: str) -> str | None:
        """One camera's snapshot now, outside any alert: its URL once the JPEG is written,
        or None when no source gave a picture (counted in `failed`, logged)."""
        if camera not in self._cameras or self.path("x", camera) is None:
            return None
        taken_id = new_id(self._wall())
        tries = [j for j in (s.capture(camera) for s in self.sources) if j is not None]
        if not await self._store(taken_id, camera, tries):
            return None
        await asyncio.to_thread(self.sweep)
        return self.url(taken_id, camera)

    @staticmethod
    def url(alert_id: str, camera: str) -> str:
        return f"{URL_PREFIX}/{alert_id}/{camera}.jpg"

    def path(self, alert_id: str, camera: str) -> Path | None:
        """The file of one snapshot, or None for names that are not ids."""
        if not (_NAME.match(alert_id) and _NAME.match(camera)):
            return None
        return self.root / alert_id / f"{camera}.jpg"

    def attach(self, alert: Alert) -> None:
        """On the hot path, as the alert is raised: list the zone's snapshots in the alert's
        data and leave the JPEGs to a background task. Never raises: a snapshot must not
        cost the alert."""
        try:
            self._attach(alert)
        except Exception as exc:
            self.failed += 1
            log.warning("snapshots not attached alert=%s error=%r", alert.id, exc)

    def _attach(self, alert: Alert) -> None:
        cameras = self._zones.get(alert.zone)
        if not cameras or self.path(alert.id, "x") is None:
            return
        jobs: list[tuple[str, list[Job]]] = []
        for camera in cameras:
            found = [j for j in (s.capture(camera) for s in self.sources) if j is not None]
            if found:
                jobs.append((camera, found))
        if not jobs:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to make them in: no snapshot is promised
        if len(self._tasks) >= MAX_PENDING:
            self.skipped += 1
            log.warning("snapshots given up alert=%s zone=%s pending=%d", alert.id,
                        alert.zone, len(self._tasks))
            return
        alert.data["snapshots"] = [{"camera": c, "url": self.url(alert.id, c)}
                                   for c, _ in jobs]
        task = loop.create_task(self._make(alert.id, jobs), name=f"snapshots:{alert.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_failure)

    async def _make(self, alert_id: str, jobs: list[tuple[str, list[Job]]]) -> None:
        for camera, tries in jobs:
            await self._store(alert_id, camera, tries)  # a failure: the others still try
        await asyncio.to_thread(self.sweep)

    async def _store(self, alert_id: str, camera: str, tries: list[Job]) -> bool:
        """The first picture the jobs give, written as the file of `alert_id`/`camera`."""
        jpeg: bytes | None = None
        for job in tries:
            try:
                jpeg = await job()
            except Exception as exc:  # a source that broke: the next one is tried
                log.warning("snapshot source failed alert=%s camera=%s error=%r",
                            alert_id, camera, exc)
            if jpeg:
                break
        target = self.path(alert_id, camera)
        if not jpeg or target is None:
            self.failed += 1
            log.warning("no snapshot alert=%s camera=%s", alert_id, camera)
            return False
        try:
            await asyncio.to_thread(self._write, target, jpeg)
        except OSError as exc:  # a full or read-only disk
            self.failed += 1
            log.warning("snapshot not written alert=%s camera=%s error=%r",
                        alert_id, camera, exc)
            return False
        self.written += 1
        return True

    @staticmethod
    def _write(target: Path, jpeg: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(".part")
        part.write_bytes(jpeg)
        os.replace(part, target)  # a reader sees the whole picture or none

    def sweep(self) -> int:
        """Remove snapshots older than the retention, and alert folders left empty."""
        if not self.root.is_dir():
            return 0
        cutoff = self._wall() - self.retention_s
        removed = 0
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for file in folder.iterdir():
                try:
                    if file.stat().st_mtime < cutoff:
                        file.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        self.removed += removed
        return removed

    async def drain(self) -> None:
        """Wait for the snapshots being made (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
