"""The vehicle registry: which plates may pass which gates into which zones, and until
when. Its own SQLite file in the data folder (`vehicles.db`), apart from the event store:
the desk and the CSV import write it, the vehicle rules read a snapshot of it.

Every change (import, pass, removal) and every read through the API leaves a row in its
audit table. A CSV import is one transaction: a bad row names its line and nothing of
the file is taken.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import sqlite3
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.vehicles.plates import PlateError, PlateKind, parse

DB_NAME = "vehicles.db"
ANY = "*"  # in `gates` or `zones`: every gate, every zone
CSV_FIELDS = ("plate", "owner_unit", "class", "gates", "zones", "valid_from", "valid_until",
              "note")
# A CSV larger than this is no registry of a compound (2,042 vehicles is ~150 kB).
MAX_CSV_BYTES = 16 * 1024 * 1024


class VehicleClass(enum.StrEnum):
    OFFICIAL = "official"  # official cars: floor 1 and B1
    STAFF = "staff"
    SUV = "suv"  # the lot north of the canteen
    VISITOR = "visitor"  # a time-limited pass from the desk
    BARRED = "barred"  # never let in by the gateway; the desk decides


@dataclass(frozen=True, slots=True)
class Vehicle:
    plate: str  # normalised
    kind: PlateKind
    owner_unit: str
    vclass: VehicleClass
    gates: frozenset[str] = frozenset({ANY})
    zones: frozenset[str] = frozenset({ANY})
    valid_from: float | None = None  # epoch seconds; None: since always
    valid_until: float | None = None  # epoch seconds, exclusive; None: no end
    note: str = ""

    def valid_at(self, now: float) -> bool:
        return ((self.valid_from is None or now >= self.valid_from)
                and (self.valid_until is None or now < self.valid_until))

    def may_use(self, gate: str) -> bool:
        return ANY in self.gates or gate in self.gates

    def may_park(self, zone: str) -> bool:
        return ANY in self.zones or zone in self.zones


class RegistryError(ConfigError):
    """A registry change refused: what and why (an import lists every bad line)."""

    def __init__(self, message: str, lines: list[tuple[int, str]] | None = None) -> None:
        self.lines = lines or []
        detail = "".join(f"\n  line {n}: {why}" for n, why in self.lines)
        super().__init__(message + detail)


@dataclass(frozen=True, slots=True)
class ImportResult:
    added: int
    changed: int
    removed: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    actor: str
    action: str
    plate: str
    detail: dict[str, Any] = field(default_factory=dict)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS vehicles (
    plate TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner_unit TEXT NOT NULL,
    class TEXT NOT NULL,
    gates TEXT NOT NULL,
    zones TEXT NOT NULL,
    valid_from REAL,
    valid_until REAL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    plate TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_plate ON audit (plate);
"""


class Registry:
    """The registry's SQLite file. Single-threaded: used from the event loop or a CLI."""

    def __init__(self, path: Path, *, timezone: str = "Asia/Shanghai") -> None:
        self.path = path
        self.tz = zoneinfo.ZoneInfo(timezone)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._listeners: list[Callable[[list[Vehicle]], None]] = []

    def close(self) -> None:
        self._db.close()

    def on_change(self, listener: Callable[[list[Vehicle]], None]) -> None:
        """`listener(vehicles)` is called with the whole registry after every change."""
        self._listeners.append(listener)

    # ---- reading ------------------------------------------------------------------------
    def vehicles(self) -> list[Vehicle]:
        rows = self._db.execute(
            "SELECT plate, kind, owner_unit, class, gates, zones, valid_from, valid_until, note"
            " FROM vehicles ORDER BY plate")
        return [_vehicle(row) for row in rows]

    def get(self, plate: str) -> Vehicle | None:
        row = self._db.execute(
            "SELECT plate, kind, owner_unit, class, gates, zones, valid_from, valid_until, note"
            " FROM vehicles WHERE plate = ?", (plate,)).fetchone()
        return None if row is None else _vehicle(row)

    def read(self, plate: str, *, actor: str, now: float) -> Vehicle | None:
        """A lookup on someone's behalf (the API): logged, found or not."""
        vehicle = self.get(plate)
        self._audit_now([(now, actor, "read", plate, {"found": vehicle is not None})])
        return vehicle

    def log_access(self, *, actor: str, action: str, plate: str, now: float,
                   detail: dict[str, Any] | None = None) -> None:
        """Someone looked at plate data (a picture, a read) through the API."""
        self._audit_now([(now, actor, action, plate, detail or {})])

    def audit(self, limit: int = 100, plate: str | None = None) -> list[AuditEntry]:
        sql = "SELECT at, actor, action, plate, detail FROM audit"
        args: tuple[Any, ...] = ()
        if plate is not None:
            sql += " WHERE plate = ?"
            args = (plate,)
        rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [AuditEntry(at, actor, action, p, json.loads(d)) for at, actor, action, p, d in rows]

    def __len__(self) -> int:
        (n,) = self._db.execute("SELECT count(*) FROM vehicles").fetchone()
        return int(n)

    # ---- changing -----------------------------------------------------------------------
    def import_csv(self, text: str, *, actor: str, now: float,
                   replace_all: bool = True) -> ImportResult:
        """Take a CSV (`CSV_FIELDS`); `replace_all`: the file is the whole registry (plates
        not in it are removed). All or nothing: any bad row refuses the whole file."""
        if len(text.encode()) > MAX_CSV_BYTES:
            raise RegistryError(f"the CSV is larger than {MAX_CSV_BYTES // 2**20} MiB")
        incoming = parse_csv(text, self.tz)
        before = {v.plate: v for v in self.vehicles()}
        added = changed = unchanged = 0
        audit: list[tuple[float, str, str, str, dict[str, Any]]] = []
        for vehicle in incoming.values():
            old = before.get(vehicle.plate)
            if old is None:
                added += 1
                audit.append((now, actor, "add", vehicle.plate, _doc(vehicle)))
            elif old != vehicle:
                changed += 1
                audit.append((now, actor, "change", vehicle.plate, _diff(old, vehicle)))
            else:
                unchanged += 1
        gone = sorted(set(before) - set(incoming)) if replace_all else []
        audit += [(now, actor, "remove", plate, {"why": "not in the imported CSV"})
                  for plate in gone]
        with self._transaction() as db:
            db.executemany("DELETE FROM vehicles WHERE plate = ?", [(p,) for p in gone])
            db.executemany(_UPSERT, [_row(v) for v in incoming.values()
                                     if before.get(v.plate) != v])
            _insert_audit(db, audit)
            _insert_audit(db, [(now, actor, "import", "*", {
                "added": added, "changed": changed, "removed": len(gone),
                "unchanged": unchanged})])
        self._changed()
        return ImportResult(added, changed, len(gone), unchanged)

    def export_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for v in self.vehicles():
            writer.writerow([v.plate, v.owner_unit, v.vclass.value, ";".join(sorted(v.gates)),
                             ";".join(sorted(v.zones)), self._when(v.valid_from),
                             self._when(v.valid_until, end=True), v.note])
        return out.getvalue()

    def put(self, vehicle: Vehicle, *, actor: str, why: str, now: float) -> None:
        if not why.strip():
            raise RegistryError("a registry change needs a reason")
        old = self.get(vehicle.plate)
        detail = _doc(vehicle) if old is None else _diff(old, vehicle)
        with self._transaction() as db:
            db.execute(_UPSERT, _row(vehicle))
            _insert_audit(db, [(now, actor, "add" if old is None else "change", vehicle.plate,
                                {**detail, "why": why})])
        self._changed()

    def remove(self, plate: str, *, actor: str, why: str, now: float) -> bool:
        if not why.strip():
            raise RegistryError("a registry change needs a reason")
        with self._transaction() as db:
            gone = db.execute("DELETE FROM vehicles WHERE plate = ?", (plate,)).rowcount
            if gone:
                _insert_audit(db, [(now, actor, "remove", plate, {"why": why})])
        if gone:
            self._changed()
        return bool(gone)

    def issue_pass(
        self, plate: str, *, owner_unit: str, hours: float, actor: str, why: str, now: float,
        gates: Iterable[str] = (ANY,), zones: Iterable[str] = (ANY,),
    ) -> Vehicle:
        """A visitor pass from the desk: valid from now for `hours`. A registered vehicle
        keeps its own entry (a barred one is not made a visitor by a pass)."""
        if not why.strip():
            raise RegistryError("a registry change needs a reason")
        try:
            normal, kind = parse(plate)
        except PlateError as exc:
            raise RegistryError(str(exc)) from None
        if not 0 < hours <= 24 * 31:
            raise RegistryError("a visitor pass lasts more than 0 and at most 744 hours")
        existing = self.get(normal)
        if existing is not None and existing.vclass is not VehicleClass.VISITOR:
            raise RegistryError(f"{normal} is registered as {existing.vclass.value}; "
                                "change its entry instead of issuing a pass")
        vehicle = Vehicle(normal, kind, owner_unit.strip() or "visitor", VehicleClass.VISITOR,
                          frozenset(gates), frozenset(zones), now, now + hours * 3600.0,
                          note=why[:200])
        self.put(vehicle, actor=actor, why=f"visitor pass: {why}", now=now)
        return vehicle

    # ---- inside -------------------------------------------------------------------------
    def _when(self, at: float | None, *, end: bool = False) -> str:
        if at is None:
            return ""
        local = dt.datetime.fromtimestamp(at, self.tz)
        if local.time() == dt.time(0):
            # A whole day: an end is shown as the last day it is valid on, as imported.
            return (local.date() - dt.timedelta(days=1 if end else 0)).isoformat()
        return local.isoformat(timespec="minutes")

    def _changed(self) -> None:
        if self._listeners:
            snapshot = self.vehicles()
            for listener in self._listeners:
                listener(snapshot)

    def _audit_now(self, rows: list[tuple[float, str, str, str, dict[str, Any]]]) -> None:
        with self._transaction() as db:
            _insert_audit(db, rows)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")


_UPSERT = (
    "INSERT INTO vehicles (plate, kind, owner_unit, class, gates, zones, valid_from,"
    " valid_until, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(plate) DO UPDATE SET"
    " kind=excluded.kind, owner_unit=excluded.owner_unit, class=excluded.class,"
    " gates=excluded.gates, zones=excluded.zones, valid_from=excluded.valid_from,"
    " valid_until=excluded.valid_until, note=excluded.note"
)


def _row(v: Vehicle) -> tuple[Any, ...]:
    return (v.plate, v.kind.value, v.owner_unit, v.vclass.value, ";".join(sorted(v.gates)),
            ";".join(sorted(v.zones)), v.valid_from, v.valid_until, v.note)


def _vehicle(row: tuple[Any, ...]) -> Vehicle:
    plate, kind, owner, vclass, gates, zones, start, end, note = row
    return Vehicle(plate, PlateKind(kind), owner, VehicleClass(vclass),
                   frozenset(gates.split(";")), frozenset(zones.split(";")), start, end, note)


def _doc(v: Vehicle) -> dict[str, Any]:
    return {"owner_unit": v.owner_unit, "class": v.vclass.value, "gates": sorted(v.gates),
            "zones": sorted(v.zones), "valid_from": v.valid_from, "valid_until": v.valid_until}


def _diff(old: Vehicle, new: Vehicle) -> dict[str, Any]:
    a, b = _doc(old), _doc(new)
    return {k: {"from": a[k], "to": b[k]} for k in a if a[k] != b[k]}


def _insert_audit(db: sqlite3.Connection,
                  rows: list[tuple[float, str, str, str, dict[str, Any]]]) -> None:
    db.executemany(
        "INSERT INTO audit (at, actor, action, plate, detail) VALUES (?, ?, ?, ?, ?)",
        [(at, actor, action, plate, json.dumps(detail, ensure_ascii=False))
         for at, actor, action, plate, detail in rows])


# ---- the CSV format -------------------------------------------------------------------------


def parse_csv(text: str, tz: dt.tzinfo) -> dict[str, Vehicle]:
    """Every row of a registry CSV, or RegistryError naming every bad line (1-based, the
    header is line 1)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise RegistryError("the CSV is empty (it needs a header line)") from None
    except csv.Error as exc:
        raise RegistryError("the CSV cannot be read", [(1, str(exc))]) from None
    header = [h.strip().lower() for h in header]
    missing = [f for f in CSV_FIELDS[:3] if f not in header]
    unknown = [h for h in header if h not in CSV_FIELDS]
    if missing or unknown:
        why = (f"missing column(s) {', '.join(missing)}" if missing else "") + (
            ("; " if missing and unknown else "") + f"unknown column(s) {', '.join(unknown)}"
            if unknown else "")
        raise RegistryError("bad CSV header", [(1, why)])
    out: dict[str, Vehicle] = {}
    first_line: dict[str, int] = {}
    bad: list[tuple[int, str]] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                bad.append((line, f"{len(cells)} fields, the header has {len(header)}"))
                continue
            try:
                vehicle = _parse_row(dict(zip(header, cells, strict=True)), tz)
            except ValueError as exc:
                bad.append((line, str(exc)))
                continue
            if vehicle.plate in out:
                bad.append((line, f"{vehicle.plate} is listed twice (first on line "
                                  f"{first_line[vehicle.plate]})"))
                continue
            out[vehicle.plate] = vehicle
            first_line[vehicle.plate] = line
    except csv.Error as exc:
        bad.append((reader.line_num, str(exc)))
    if bad:
        raise RegistryError(f"{len(bad)} bad row(s); nothing was imported", bad)
    return out


def _parse_row(row: Mapping[str, str], tz: dt.tzinfo) -> Vehicle:
    plate, kind = parse(row["plate"])
    try:
        vclass = VehicleClass(row["class"].strip().lower())
    except ValueError:
        known = ", ".join(c.value for c in VehicleClass)
        raise ValueError(f"class {row['class']!r} is not one of {known}") from None
    owner = row["owner_unit"].strip()
    if not owner:
        raise ValueError("owner_unit is empty")
    start = _date(row.get("valid_from", ""), tz, "valid_from", end=False)
    end = _date(row.get("valid_until", ""), tz, "valid_until", end=True)
    if start is not None and end is not None and end <= start:
        raise ValueError("valid_until is not after valid_from")
    if vclass is VehicleClass.VISITOR and end is None:
        raise ValueError("a visitor needs valid_until")
    return Vehicle(plate, kind, owner, vclass, _names(row.get("gates", "")),
                   _names(row.get("zones", "")), start, end, row.get("note", "").strip())


def _names(text: str) -> frozenset[str]:
    names = frozenset(n.strip() for n in text.split(";") if n.strip())
    return names or frozenset({ANY})


def _date(text: str, tz: dt.tzinfo, what: str, *, end: bool) -> float | None:
    """A date (the whole day, in the site's time zone) or a local date and time."""
    text = text.strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            if end:
                day += dt.timedelta(days=1)  # valid through the last day
            return dt.datetime.combine(day, dt.time(0), tz).timestamp()
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a date (YYYY-MM-DD) or date and time"
                         ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()

