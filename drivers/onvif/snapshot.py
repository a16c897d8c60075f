"""Alarm snapshots from the camera's ONVIF snapshot URI: one HTTP GET with the camera's
login (Digest where the camera offers it, Basic only when it offers nothing else, as for
the stream). Tried before the last keyframe; on any failure the keyframe still gives the
picture."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from drivers.rtsp import auth
from gateway.errors import PayloadRejected

log = logging.getLogger("drivers.onvif")

MAX_JPEG: Final = 8 << 20  # a 4K JPEG is under 2 MiB; more is not a picture
_JPEG_MAGIC: Final = b"\xff\xd8"


@dataclass(frozen=True, slots=True)
class SnapshotLogin:
    uri: Callable[[], str | None]  # the monitor's latest snapshot URI, None before it knows
    username: str | None
    password: str | None


class OnvifSnapshotSource:
    """A `gateway.snapshots.SnapshotSource`. The URI is taken at capture time (cheap); the
    GET runs in the job, bounded by `timeout_s`, so the fallback is not kept waiting."""

    name = "onvif"

    def __init__(self, cameras: dict[str, SnapshotLogin], *, timeout_s: float = 3.0) -> None:
        self._cameras = cameras
        self.timeout_s = timeout_s
        self.fetched = 0
        self.failed = 0
        self._failing: set[str] = set()  # logged once when they start failing, and back

    def capture(self, camera: str) -> Callable[[], Awaitable[bytes | None]] | None:
        login = self._cameras.get(camera)
        uri = login.uri() if login is not None else None
        if login is None or uri is None:
            return None

        async def job() -> bytes | None:
            try:
                picture = await fetch(uri, login.username, login.password, self.timeout_s)
            except (aiohttp.ClientError, OSError, TimeoutError, PayloadRejected) as exc:
                picture, error = None, type(exc).__name__
            else:
                error = "no JPEG" if picture is None else ""
            if picture is None:
                self.failed += 1
                if camera not in self._failing:
                    self._failing.add(camera)
                    log.warning("onvif snapshot failed camera=%s error=%s (the keyframe "
                                "stands in; logged again once it works)", camera, error)
                return None
            self.fetched += 1
            if camera in self._failing:
                self._failing.discard(camera)
                log.info("onvif snapshot works again camera=%s", camera)
            return picture

        return job


async def fetch(uri: str, username: str | None, password: str | None,
                timeout_s: float) -> bytes | None:
    """The JPEG at `uri`, or None if the camera answered without one."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    parts = urlsplit(uri)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(uri) as r:
            if r.status == 401 and username is not None:
                challenge = auth.pick(tuple(r.headers.getall("WWW-Authenticate", [])))
                header = (auth.digest(challenge, username, password or "", "GET", target)
                          if challenge.scheme == "digest"
                          else auth.basic(username, password or ""))
            else:
                return await _jpeg(r)
        async with http.get(uri, headers={"Authorization": header}) as r:
            return await _jpeg(r)


async def _jpeg(r: aiohttp.ClientResponse) -> bytes | None:
    if r.status != 200:
        return None
    body = await r.content.read(MAX_JPEG + 1)
    if len(body) > MAX_JPEG or not body.startswith(_JPEG_MAGIC):
        return None
    return body
