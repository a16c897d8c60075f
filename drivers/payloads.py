"""What every device family's decoder reads a JSON payload with, whatever the protocol
(an MQTT report, an HTTP push)."""

from __future__ import annotations

import json
from typing import Any

_JSON = json.JSONDecoder()
_BOM = b"\xef\xbb\xbf"


def parse_json(payload: bytes) -> Any:
    """The JSON document of a payload, read as UTF-8 (what RFC 8259 asks of JSON between
    systems; a leading byte-order mark is ignored). Raises ValueError (not UTF-8, not
    JSON, an integer beyond Python's digit limit) or RecursionError (nested too deeply),
    which the decoder turns into its own rejection.

    `json.loads` of bytes first guesses among UTF-8, -16 and -32; the guess was a third
    of a heat report's parse."""
    if payload.startswith(_BOM):
        payload = payload[3:]
    return _JSON.decode(payload.decode())
