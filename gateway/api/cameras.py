"""The desk's routes for the CCTV cameras, on the desk API:

- `GET  /api/cameras`                      cameras: zone, stream state, picture state
- `POST /api/cameras/{camera}/snapshot`    a snapshot now: `{"reason", "operator"}`;
                                            201 with its URL once the JPEG is written
- `POST /api/cameras/{camera}/reference`   the camera looks where it should: what it
                                            shows now is the moved check's reference
                                            (clears a moved picture): `{"reason", "operator"}`

Both actions are audited like a command to a device: a `requested` row that must commit
before anything is done (or the answer is 503), then a `result` row.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from gateway.api.audited import BadBody, answer, read_object, reason_operator, who_from
from gateway.clock import Clock
from gateway.errors import StoreFailed
from gateway.snapshots import Snapshots
from gateway.store import AuditRow, StoreError

log = logging.getLogger(__name__)

# A camera's keyframes are 1-4 s apart: past this the latest one taken is used instead.
FRESH_KEYFRAME_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class DeskCamera:
    """One watched camera as the desk sees and handles it (its stream monitor's seams)."""

    id: str
    zone: str
    state: Callable[[], object]  # the supervisor's link state: up, degraded, down, stale
    picture: Callable[[], tuple[str, float | None]]  # (picture state, likeness)
    refresh: Callable[[float], Awaitable[bool]]  # take the next keyframe, within seconds
    retake: Callable[[str, str], Awaitable[object]]  # (who, why) -> the picture state


# Commits one audit row, or raises StoreFailed (not written) or StoreError (not open).
Audit = Callable[[AuditRow], Awaitable[None]]


class _CameraDesk:
    def __init__(self, cameras: Callable[[], Mapping[str, DeskCamera]], snapshots: Snapshots,
                 audit: Audit, clock: Clock, zone_names: Mapping[str, str]) -> None:
        self.cameras = cameras  # the running core's (swapped on a rebuild)
        self.snapshots = snapshots
        self.audit = audit
        self.clock = clock
        self.zone_names = zone_names


_KEY: Final = web.AppKey("camera_desk", _CameraDesk)


def add_camera_routes(app: web.Application, cameras: Callable[[], Mapping[str, DeskCamera]],
                      snapshots: Snapshots, audit: Audit, clock: Clock,
                      zone_names: Mapping[str, str] | None = None) -> None:
    app[_KEY] = _CameraDesk(cameras, snapshots, audit, clock, dict(zone_names or {}))
    app.router.add_get("/api/cameras", _list)
    app.router.add_post("/api/cameras/{camera}/snapshot", _snapshot)
    app.router.add_post("/api/cameras/{camera}/reference", _reference)


async def _list(request: web.Request) -> web.Response:
    desk = request.app[_KEY]
    rows = []
    for cam in desk.cameras().values():
        picture, like = cam.picture()
        rows.append({"id": cam.id, "zone": cam.zone,
                     "zone_name": desk.zone_names.get(cam.zone, cam.zone),
                     "stream": str(cam.state()), "picture": picture,
                     "likeness": None if like is None else round(like, 3)})
    return answer({"cameras": rows})


async def _asked(request: web.Request, action: str
                 ) -> tuple[_CameraDesk, DeskCamera, str, str] | web.Response:
    """The camera, who and why, with the `requested` audit row committed; or the answer
    that refuses it."""
    desk = request.app[_KEY]
    camera = desk.cameras().get(request.match_info["camera"])
    if camera is None:
        return answer({"error": f"no camera {request.match_info['camera'][:64]}"}, 404)
    try:
        why, operator = reason_operator(await read_object(request))
    except BadBody as exc:
        return answer({"error": str(exc)}, 400)
    who = who_from(request, operator)
    try:
        await desk.audit(AuditRow(desk.clock.now(), who, action, camera.id,
                                  {"stage": "requested", "why": why}))
    except (StoreFailed, StoreError) as exc:
        return answer({"error": f"not audited, not done: {exc}"}, 503)
    return desk, camera, who, why


async def _result(desk: _CameraDesk, who: str, action: str, camera: str,
                  detail: dict[str, Any]) -> None:
    try:
        await desk.audit(AuditRow(desk.clock.now(), who, action, camera,
                                  {"stage": "result", **detail}))
    except (StoreFailed, StoreError) as exc:
        log.error("camera audit row not stored camera=%s action=%s error=%r", camera,
                  action, exc)


async def _snapshot(request: web.Request) -> web.Response:
    asked = await _asked(request, "camera.snapshot")
    if isinstance(asked, web.Response):
        return asked
    desk, camera, who, why = asked
    # The next keyframe, so the picture is of now; the sources then make it as they
    # make an alarm's.
    fresh = await camera.refresh(FRESH_KEYFRAME_S)
    url = await desk.snapshots.take(camera.id)
    await _result(desk, who, "camera.snapshot", camera.id,
                  {"url": url, "fresh": fresh, "why": why})
    if url is None:
        log.warning("snapshot on demand camera=%s who=%s: no picture", camera.id, who)
        return answer({"camera": camera.id,
                        "error": "no picture: the camera has sent no keyframe"}, 503)
    log.info("snapshot on demand camera=%s who=%s url=%s", camera.id, who, url)
    return answer({"camera": camera.id, "url": url, "fresh": fresh}, 201)


async def _reference(request: web.Request) -> web.Response:
    asked = await _asked(request, "camera.reference")
    if isinstance(asked, web.Response):
        return asked
    desk, camera, who, why = asked
    picture = str(await camera.retake(who, why))
    await _result(desk, who, "camera.reference", camera.id, {"picture": picture, "why": why})
    return answer({"camera": camera.id, "picture": picture})
