"""The vehicle registry on disk: CSV import all-or-nothing with the bad line named, export
that imports back unchanged, every change and API read audited, visitor passes, and the
shipped sample of 2,042 synthetic vehicles."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.vehicles.plates import PlateKind, is_valid
from gateway.vehicles.registry import (
    ANY,
    Registry,
    RegistryError,
    Vehicle,
    VehicleClass,
)
from simulators.vehicle_sample import sample, to_csv

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_764_000_000.0
HEADER = "plate,owner_unit,class,gates,zones,valid_from,valid_until,note\n"
GOOD = HEADER + (
    "湘A12345,区政府办公室,official,*,main-parking-f1;main-parking-b1,,,\n"
    "湘AD12345,区财政局,staff,gate-main-in;gate-main-out,,,,\n"
    "湘 a·88888,区城管局,suv,gate-suv-lot,suv-lot-north,,,full-width and dots\n"
    "湘A00001,来访单位,visitor,,,2026-01-01,2026-01-31,\n"
    "湘A99999,-,barred,,,,,\n"
)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    r = Registry(tmp_path / "vehicles.db")
    yield r  # type: ignore[misc]
    r.close()


def test_an_import_takes_every_row(registry: Registry) -> None:
    result = registry.import_csv(GOOD, actor="desk", now=T0)
    assert (result.added, result.changed, result.removed) == (5, 0, 0)
    official = registry.get("湘A12345")
    assert official == Vehicle("湘A12345", PlateKind.ORDINARY, "区政府办公室",
                               VehicleClass.OFFICIAL, frozenset({ANY}),
                               frozenset({"main-parking-f1", "main-parking-b1"}))
    suv = registry.get("湘A88888")  # stored normalised
    assert suv is not None and suv.may_park("suv-lot-north") and not suv.may_park("b1")
    visitor = registry.get("湘A00001")
    assert visitor is not None and visitor.valid_until is not None
    # Valid through the last day, in the site's time zone (UTC+8).
    assert visitor.valid_at(visitor.valid_until - 1) and not visitor.valid_at(visitor.valid_until)
    assert registry.get("湘AD12345").kind is PlateKind.NEW_ENERGY_SMALL  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rows", "line", "why"),
    [
        ("湘AI2345,x,staff,,,,,\n", 3, "not a valid plate"),
        ("湘A22222,,staff,,,,,\n", 3, "owner_unit is empty"),
        ("湘A22222,x,boss,,,,,\n", 3, "class 'boss' is not one of"),
        ("湘A22222,x,visitor,,,,,\n", 3, "a visitor needs valid_until"),
        ("湘A22222,x,staff,,,2026-02-30,,\n", 3, "valid_from '2026-02-30' is not a date"),
        ("湘A22222,x,staff,,,2026-03-01,2026-02-01,\n", 3, "valid_until is not after"),
        ("湘A22222,x,staff\n", 3, "3 fields, the header has 8"),
        ("湘A12345,again,staff,,,,,\n", 3, "湘A12345 is listed twice (first on line 2)"),
        ("无牌车,x,staff,,,,,\n", 3, "is no plate"),
    ],
)
def test_a_bad_row_names_its_line_and_nothing_is_imported(
    registry: Registry, rows: str, line: int, why: str
) -> None:
    registry.import_csv(GOOD, actor="desk", now=T0)
    before = registry.export_csv()
    text = HEADER + "湘A12345,区政府办公室,official,*,*,,,\n" + rows + "湘A55555,x,staff,,,,,\n"
    with pytest.raises(RegistryError) as caught:
        registry.import_csv(text, actor="desk", now=T0 + 1)
    assert caught.value.lines[0][0] == line
    assert why in caught.value.lines[0][1]
    assert f"line {line}: " in str(caught.value)
    assert "nothing was imported" in str(caught.value)
    assert registry.export_csv() == before
    assert registry.get("湘A55555") is None
    assert [e.action for e in registry.audit(1)] == ["import"]  # only the first import's


def test_every_bad_line_is_listed_at_once(registry: Registry) -> None:
    text = HEADER + "湘AI2345,x,staff,,,,,\n湘A22222,x,staff,,,,,\n湘A3333,x,staff,,,,,\n"
    with pytest.raises(RegistryError) as caught:
        registry.import_csv(text, actor="desk", now=T0)
    assert [n for n, _ in caught.value.lines] == [2, 4]
    assert len(registry) == 0


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("plate,owner_unit\n湘A12345,x\n", "missing column(s) class"),
        ("plate,owner_unit,class,colour\n", "unknown column(s) colour"),
    ],
)
def test_a_bad_header_is_refused(registry: Registry, text: str, why: str) -> None:
    with pytest.raises(RegistryError, match="CSV") as caught:
        registry.import_csv(text, actor="desk", now=T0)
    assert why in str(caught.value)


def test_a_replacing_import_removes_what_the_file_drops_and_a_merge_keeps_it(
    registry: Registry,
) -> None:
    registry.import_csv(GOOD, actor="desk", now=T0)
    smaller = HEADER + "湘A12345,区政府办公室,official,*,main-parking-f1,,,\n"
    merged = registry.import_csv(smaller, actor="desk", now=T0 + 1, replace_all=False)
    assert (merged.changed, merged.removed, len(registry)) == (1, 0, 5)
    replaced = registry.import_csv(smaller, actor="desk", now=T0 + 2)
    assert (replaced.unchanged, replaced.removed, len(registry)) == (1, 4, 1)
    actions = [(e.action, e.plate) for e in registry.audit(20)]
    assert ("remove", "湘A99999") in actions
    change = next(e for e in registry.audit(20) if e.action == "change")
    assert change.detail == {"zones": {"from": ["main-parking-b1", "main-parking-f1"],
                                       "to": ["main-parking-f1"]}}


def test_export_imports_back_unchanged(registry: Registry, tmp_path: Path) -> None:
    registry.import_csv(GOOD, actor="desk", now=T0)
    other = Registry(tmp_path / "other.db")
    other.import_csv(registry.export_csv(), actor="desk", now=T0)
    assert other.vehicles() == registry.vehicles()
    assert registry.import_csv(registry.export_csv(), actor="desk", now=T0).unchanged == 5
    other.close()


def test_visitor_passes_from_the_desk(registry: Registry) -> None:
    registry.import_csv(GOOD, actor="desk", now=T0)
    seen: list[int] = []
    registry.on_change(lambda vehicles: seen.append(len(vehicles)))
    v = registry.issue_pass("粤B 2OOOO".replace("O", "0"), owner_unit="市卫健委", hours=4,
                            actor="desk:wang", why="meeting in room 214", now=T0)
    assert v.vclass is VehicleClass.VISITOR and v.plate == "粤B20000"
    assert v.valid_at(T0) and v.valid_at(T0 + 4 * 3600 - 1) and not v.valid_at(T0 + 4 * 3600)
    assert seen == [6]
    entry = registry.audit(1)[0]
    assert (entry.actor, entry.action, entry.plate) == ("desk:wang", "add", "粤B20000")
    assert entry.detail["why"] == "visitor pass: meeting in room 214"
    with pytest.raises(RegistryError, match="registered as barred"):
        registry.issue_pass("湘A99999", owner_unit="x", hours=1, actor="desk", why="w", now=T0)
    with pytest.raises(RegistryError, match="not a valid plate"):
        registry.issue_pass("湘AI9999", owner_unit="x", hours=1, actor="desk", why="w", now=T0)
    with pytest.raises(RegistryError, match="at most 744 hours"):
        registry.issue_pass("湘A77777", owner_unit="x", hours=0, actor="desk", why="w", now=T0)
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.issue_pass("湘A77777", owner_unit="x", hours=1, actor="desk", why=" ", now=T0)
    assert seen == [6]


def test_reads_on_someones_behalf_are_logged(registry: Registry, tmp_path: Path) -> None:
    registry.import_csv(GOOD, actor="desk", now=T0)
    assert registry.read("湘A12345", actor="api:desk from 127.0.0.1", now=T0) is not None
    assert registry.read("湘A00000", actor="api:desk from 127.0.0.1", now=T0) is None
    with sqlite3.connect(tmp_path / "vehicles.db") as conn:
        rows = conn.execute("SELECT actor, action, plate, detail FROM audit WHERE action='read'"
                            " ORDER BY id").fetchall()
    assert rows == [("api:desk from 127.0.0.1", "read", "湘A12345", '{"found": true}'),
                    ("api:desk from 127.0.0.1", "read", "湘A00000", '{"found": false}')]


def test_the_shipped_sample_is_the_generators_and_imports_whole(tmp_path: Path) -> None:
    shipped = (ROOT / "config" / "vehicles.csv").read_text(encoding="utf-8")
    assert shipped == to_csv(sample())
    rows = sample()
    assert len(rows) == 2042 and len({r["plate"] for r in rows}) == 2042
    assert all(is_valid(r["plate"]) for r in rows)
    r = Registry(tmp_path / "vehicles.db")
    assert r.import_csv(shipped, actor="test", now=T0).added == 2042
    counts = {c: sum(1 for v in r.vehicles() if v.vclass is c) for c in VehicleClass}
    assert counts == {VehicleClass.OFFICIAL: 160, VehicleClass.STAFF: 1540,
                      VehicleClass.SUV: 240, VehicleClass.VISITOR: 70, VehicleClass.BARRED: 32}
    r.close()


def test_the_cli_imports_exports_and_shows_the_audit(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "gateway.cli", "vehicles", "--site",
           str(ROOT / "config" / "site.yaml"), "--data-dir", str(tmp_path)]
    good = tmp_path / "good.csv"
    good.write_text(GOOD, encoding="utf-8")
    done = subprocess.run([*cli, "import", str(good), "--actor", "li"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "5 added" in done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "湘AI2345,x,staff,,,,,\n", encoding="utf-8")
    done = subprocess.run([*cli, "import", str(bad)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1
    assert "line 2: '湘AI2345' is not a valid plate" in done.stderr
    exported = subprocess.run([*cli, "export"], capture_output=True, text=True, check=True)
    assert exported.stdout.count("\n") == 6
    audit = subprocess.run([*cli, "audit", "--plate", "湘A12345"], capture_output=True,
                           text=True, check=True)
    assert '"actor": "li via cli"' in audit.stdout and '"action": "add"' in audit.stdout
