"""Plates are personal data here: logs always, and forwarded alerts on request, carry a
keyed hash of a plate (a pseudonym) instead of the plate itself."""

from __future__ import annotations

import hashlib
import hmac
import os


class Pseudonyms:
    """`ref(plate)` is stable for one key. Without a key (nothing forwarded needs to be
    linked across restarts) a random one serves the logs."""

    def __init__(self, key: bytes | None = None, *, forward: bool = False) -> None:
        self._key = key if key else os.urandom(32)
        self.forward = forward  # forwarded alerts carry the pseudonym, not the plate

    def ref(self, plate: str) -> str:
        if not plate:
            return "p-none"
        digest = hmac.new(self._key, plate.encode(), hashlib.sha256).hexdigest()
        return f"p-{digest[:16]}"

    def shown(self, plate: str) -> str:
        """The plate as alerts carry it: the plate, or its pseudonym when forwarding asks."""
        return self.ref(plate) if self.forward else plate
