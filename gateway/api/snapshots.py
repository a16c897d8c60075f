"""`GET /api/snapshots/{alert_id}/{camera}.jpg`: an alarm's snapshot, as named in the
alert's `snapshots`. 404 while it is being made, if no source gave one, or once retention
removed it."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from gateway.snapshots import URL_PREFIX, Snapshots

_SNAPSHOTS: Final = web.AppKey("snapshots", Snapshots)


def add_snapshot_routes(app: web.Application, snapshots: Snapshots) -> None:
    app[_SNAPSHOTS] = snapshots
    app.router.add_get(URL_PREFIX + "/{alert_id}/{camera}.jpg", _snapshot)


async def _snapshot(request: web.Request) -> web.FileResponse:
    path = request.app[_SNAPSHOTS].path(request.match_info["alert_id"],
                                        request.match_info["camera"])
    if path is None or not path.is_file():
        raise web.HTTPNotFound(text='{"error": "no such snapshot"}',
                               content_type="application/json")
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg",
                                           "Cache-Control": "private, max-age=86400"})
