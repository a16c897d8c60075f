"""The desk actions' shared body: a small JSON object with an operator and a reason, the
same 400 messages for the cameras' and the gates' routes, and the audit's who."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from gateway.api.audited import (
    MAX_BODY,
    BadBody,
    answer,
    read_object,
    reason_operator,
    who_from,
)
from tests.test_api import served


async def _asked(request: web.Request) -> web.Response:
    try:
        reason, operator = reason_operator(await read_object(request))
    except BadBody as exc:
        return answer({"error": str(exc)}, 400)
    return answer({"who": who_from(request, operator), "why": reason})


async def _post(base: str, data: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(base + "/asked", data=data) as resp:
        return resp.status, await resp.json()


async def _pieces(*parts: bytes) -> AsyncIterator[bytes]:
    """A body sent chunked (no length), a pause between its pieces."""
    for part in parts:
        yield part
        await asyncio.sleep(0.05)


async def test_bad_bodies_are_refused_with_the_desk_messages() -> None:
    app = web.Application()
    app.router.add_post("/asked", _asked)
    async with served(app) as (base, _):
        assert await _post(base, b"x" * (MAX_BODY + 1)) == (400, {"error": "body too large"})
        chunked = _pieces(b"{" + b" " * MAX_BODY, b"}")
        assert await _post(base, chunked) == (400, {"error": "body too large"})
        assert await _post(base, b"{nope") == (400, {"error": "body is not JSON"})
        assert await _post(base, b"[1]") == (400, {"error": "body must be an object"})
        assert await _post(base, b'{"operator": "Wang"}') == (
            400, {"error": "reason is required (a non-empty string)"})
        assert await _post(base, b'{"reason": "  ", "operator": "Wang"}') == (
            400, {"error": "reason is required (a non-empty string)"})
        assert await _post(base, b'{"reason": "test"}') == (
            400, {"error": "operator is required (a non-empty string)"})


async def test_a_body_in_pieces_is_read_whole_and_names_who_and_why() -> None:
    app = web.Application()
    app.router.add_post("/asked", _asked)
    async with served(app) as (base, _):
        status, doc = await _post(base, _pieces(b'{"reason": " drill ", ',
                                                 '"operator": "王'.encode(), b'"}'))
    assert status == 200
    assert doc == {"who": "王 via api from 127.0.0.1", "why": "drill"}
