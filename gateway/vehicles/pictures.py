"""Plate pictures as files in the data folder (`plates/<day>/<event id>-<n>.jpg`), named
from the event that refers to them, and deleted by day after the retention period."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

_DAY = "%Y-%m-%d"


class PictureStore:
    def __init__(self, folder: Path, *, days: int) -> None:
        self.folder = folder
        self.days = days
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, event_id: str, n: int, data: bytes, now: float) -> str:
        """Write one picture (whole or not at all) and return its name for the event."""
        name = self.name(event_id, n, data, now)
        self.write(name, data)
        return name

    @staticmethod
    def name(event_id: str, n: int, data: bytes, now: float) -> str:
        """The name picture `n` of event `event_id` is stored under (no disk access)."""
        day = dt.datetime.fromtimestamp(now, dt.UTC).strftime(_DAY)
        ext = "png" if data.startswith(b"\x89PNG") else "jpg"
        return f"{day}/{event_id}-{n}.{ext}"

    def write(self, name: str, data: bytes) -> None:
        """Write a named picture, whole or not at all (blocking: run it off the loop)."""
        target = self.folder / name
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def path(self, name: str) -> Path | None:
        """The file of a picture name, or None for a name that is not one of ours."""
        parts = name.split("/")
        if len(parts) != 2 or not parts[1] or parts[1].startswith("."):
            return None
        try:
            dt.datetime.strptime(parts[0], _DAY)
        except ValueError:
            return None
        if any(c in parts[1] for c in "\\\x00") or ".." in parts[1]:
            return None
        path = self.folder / parts[0] / parts[1]
        return path if path.is_file() else None

    def expire(self, now: float) -> int:
        """Delete the days older than the retention period; how many days went."""
        cutoff = (dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=self.days)).date()
        gone = 0
        for entry in self.folder.iterdir():
            try:
                day = dt.datetime.strptime(entry.name, _DAY).date()
            except ValueError:
                continue
            if day < cutoff and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                gone += 1
        return gone
