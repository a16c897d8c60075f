"""Plate pictures on disk and plate pseudonyms, from tables: a picture is written whole,
named from its event, found only by its own name, and deleted by day after retention;
a pseudonym is stable for one key and tells nothing without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.vehicles.pictures import PictureStore
from gateway.vehicles.privacy import Pseudonyms

DAY = 86_400.0
T0 = 1_764_720_000.0  # 2025-12-03 00:00 UTC


def test_a_picture_is_written_whole_and_named_from_its_event(tmp_path: Path) -> None:
    store = PictureStore(tmp_path / "plates", days=30)
    name = store.save("01EVENT", 0, b"\xff\xd8\xff" + b"x" * 100, T0 + 3600)
    assert name == "2025-12-03/01EVENT-0.jpg"
    path = store.path(name)
    assert path is not None and path.read_bytes().startswith(b"\xff\xd8\xff")
    assert store.save("01EVENT", 1, b"\x89PNG\r\n\x1a\n", T0).endswith("-1.png")
    assert not list((tmp_path / "plates").rglob("*.part"))


@pytest.mark.parametrize(
    "name",
    ["../gateway.db", "2025-12-03/../../gateway.db", "2025-12-03/", "2025-13-03/x.jpg",
     "2025-12-03/.hidden", "2025-12-03/a/b.jpg", "2025-12-03\\x.jpg", "", "2025-12-03/nope.jpg"],
)
def test_only_a_picture_of_ours_is_found(tmp_path: Path, name: str) -> None:
    store = PictureStore(tmp_path / "plates", days=30)
    store.save("01EVENT", 0, b"\xff\xd8\xff", T0)
    (tmp_path / "gateway.db").write_text("secret")
    assert store.path(name) is None


def test_days_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    store = PictureStore(tmp_path / "plates", days=30)
    for age in (0, 29, 30, 31, 90):
        store.save(f"E{age}", 0, b"\xff\xd8\xff", T0 - age * DAY)
    (tmp_path / "plates" / "not-a-day").mkdir()
    assert store.expire(T0) == 2  # 31 and 90 days old
    left = sorted(p.name for p in (tmp_path / "plates").iterdir())
    assert left == ["2025-11-03", "2025-11-04", "2025-12-03", "not-a-day"]


def test_pseudonyms() -> None:
    keyed = Pseudonyms(b"k" * 32, forward=True)
    same = Pseudonyms(b"k" * 32)
    other = Pseudonyms(b"j" * 32)
    ref = keyed.ref("湘A12345")
    assert ref.startswith("p-") and len(ref) == 18 and "湘" not in ref
    assert ref == same.ref("湘A12345") != other.ref("湘A12345")
    assert keyed.ref("湘A12345") != keyed.ref("湘A12346")
    assert keyed.shown("湘A12345") == ref and same.shown("湘A12345") == "湘A12345"
    assert keyed.ref("") == "p-none"
    assert Pseudonyms().ref("湘A12345") != Pseudonyms().ref("湘A12345")  # random key


async def test_plate_events_are_kept_no_longer_than_the_gates_say(tmp_path: Path) -> None:
    import asyncio

    from gateway.clock import ManualClock
    from gateway.events import Event
    from gateway.store import Retention, Store, WriteBatch

    now = T0 + 1000 * DAY
    store = Store(tmp_path / "gateway.db", clock=ManualClock(now),
                  retention=Retention(events_days=90, gate_events_days=30))
    store.open(asyncio.get_running_loop())
    try:
        def ev(kind: str, seq: int, age_days: float) -> Event:
            return Event(kind, "gate-main-in" if kind.startswith("gate.") else "hd-01",
                         seq=seq, time=now - age_days * DAY, data={"plate": "湘A12345"})

        await store.submit(WriteBatch(events=[
            ev("gate.plate", 1, 31), ev("gate.plate", 2, 29), ev("gate.state", 3, 31),
            ev("fire.detector.alarm", 1, 31), ev("fire.detector.alarm", 2, 91),
        ]))
        deleted = await store.run_retention(now)
        assert (deleted["gate_events"], deleted["events"]) == (2, 1)
        left = sorted((e["kind"], e["seq"]) for e in store.events_for())
        assert left == [("fire.detector.alarm", 1), ("gate.plate", 2)]
    finally:
        await store.close()
