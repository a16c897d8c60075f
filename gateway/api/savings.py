"""The savings report over HTTP: `GET /api/savings` lists the site's measures,
`GET /api/savings/{measure}` answers one measure's report as JSON, optionally for other
periods (`?baseline=2025-01-01:2026-01-01&reporting=2026-01-01:2027-01-01`), and
`GET /savings` is the page the facilities staff read them on."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.api.app import DESK_POLICY, STATIC_DIR
from gateway.energy_config import Period
from gateway.savings_report import SavingsError

Report = Callable[[str, Period | None, Period | None], Awaitable[dict[str, Any]]]
Measures = Callable[[], list[dict[str, Any]]]

_dumps = functools.partial(json.dumps, ensure_ascii=False)


def parse_period(text: str) -> Period:
    """`START:END` as ISO dates, END excluded."""
    start, sep, end = text.partition(":")
    if not sep:
        raise ValueError(f"a period is START:END (ISO dates), not {text!r}")
    try:
        return Period(start=dt.date.fromisoformat(start), end=dt.date.fromisoformat(end))
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    except ValueError:
        raise ValueError(f"a period is START:END (ISO dates), not {text!r}") from None


def add_savings_routes(app: web.Application, report: Report, measures: Measures) -> None:
    async def _list(request: web.Request) -> web.Response:
        return web.json_response({"measures": measures()}, dumps=_dumps)

    async def _one(request: web.Request) -> web.Response:
        measure = request.match_info["measure"]
        if measure not in {m["id"] for m in measures()}:
            raise web.HTTPNotFound(text=_dumps({"error": f"no measure {measure!r}"}),
                                   content_type="application/json")
        periods: dict[str, Period | None] = {"baseline": None, "reporting": None}
        for name in periods:
            text = request.query.get(name)
            if text is not None:
                try:
                    periods[name] = parse_period(text)
                except ValueError as exc:
                    raise web.HTTPBadRequest(text=_dumps({"error": f"{name}: {exc}"}),
                                             content_type="application/json") from None
        try:
            data = await report(measure, periods["baseline"], periods["reporting"])
        except SavingsError as exc:
            raise web.HTTPUnprocessableEntity(text=_dumps({"error": str(exc)}),
                                              content_type="application/json") from None
        return web.json_response(data, dumps=_dumps)

    async def _page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "savings.html", headers={
            "Cache-Control": "no-cache", "Content-Security-Policy": DESK_POLICY})

    app.router.add_get("/savings", _page)
    app.router.add_get("/api/savings", _list)
    app.router.add_get("/api/savings/{measure}", _one)
