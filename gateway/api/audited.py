"""What every desk action asks of its request, in one place: a small JSON object carrying
an `operator` and a `reason`, so each action is audited the same way, as who
`"<operator> via api from <peer>"` and why `<reason>`.

The cameras' and the gates' routes refuse a bad body with the same 400 messages; the
desk page and the tests read them, so they are worded here once.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

MAX_BODY: Final = 4096
REASON_MAX: Final = 500
OPERATOR_MAX: Final = 60


class BadBody(Exception):
    """The body is refused: the answer is 400 with this message as its `error`."""


def answer(doc: Any, status: int = 200) -> web.Response:
    """A JSON answer, with names (plates, operators) left as they were written."""
    return web.json_response(doc, status=status,
                             dumps=lambda d: json.dumps(d, ensure_ascii=False))


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object of at most `MAX_BODY` bytes; BadBody otherwise.

    Read in chunks up to one byte past the bound: a body sent without a length (chunked)
    is refused as soon as it is too large, and one that arrives in several segments is
    still read whole."""
    if (request.content_length or 0) > MAX_BODY:
        raise BadBody("body too large")
    raw = b""
    while len(raw) <= MAX_BODY:
        chunk = await request.content.read(MAX_BODY + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_BODY:
        raise BadBody("body too large")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadBody("body is not JSON") from None
    if not isinstance(body, dict):
        raise BadBody("body must be an object")
    return body


def required(body: dict[str, Any], name: str, limit: int = REASON_MAX) -> str:
    """A required field: a non-empty string, stripped and cut to `limit`."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadBody(f"{name} is required (a non-empty string)")
    return value.strip()[:limit]


def reason_operator(body: dict[str, Any]) -> tuple[str, str]:
    """(reason, operator), both required, the reason checked first."""
    return required(body, "reason"), required(body, "operator", OPERATOR_MAX)


def who_from(request: web.Request, operator: str) -> str:
    """The audit's who: the operator as named, and the peer the request came from."""
    return f"{operator[:OPERATOR_MAX]} via api from {request.remote or '-'}"
