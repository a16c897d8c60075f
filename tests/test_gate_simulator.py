"""The gate simulator's traffic from the shipped registry: the mix the tests and the demo
rely on, vehicles that fit their gates, and OCR errors that are one confusion away."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from gateway.vehicles.plates import MatchKind, match
from simulators.gates import Barrier, load_vehicles, ocr_error, traffic

ROOT = Path(__file__).resolve().parent.parent
GATES = ["gate-main-in", "gate-parking-b1", "gate-suv-lot"]
AREAS = {"gate-parking-b1": "main-parking-b1", "gate-suv-lot": "suv-lot-north"}


def test_the_morning_traffic_mixes_every_kind_and_fits_the_gates() -> None:
    vehicles = load_vehicles(ROOT / "config" / "vehicles.csv")
    by_plate = {v.plate: v for v in vehicles}
    passes = traffic(vehicles, GATES, 2000, areas=AREAS)
    kinds = Counter(p.kind for p in passes)
    assert set(kinds) == {"registered", "unknown", "barred", "fuzzy", "low_province",
                          "offline", "duplicate"}
    assert kinds["registered"] > 0.8 * len(passes)
    for p in passes:
        if p.kind == "registered":
            assert by_plate[p.read].fits(p.gate, AREAS.get(p.gate))
        elif p.kind == "unknown":
            assert p.read not in by_plate


def test_an_ocr_error_is_one_confusion_off_the_province() -> None:
    rng = random.Random(3)
    plates = {v.plate for v in load_vehicles(ROOT / "config" / "vehicles.csv")}
    for plate in sorted(plates)[:300]:
        read = ocr_error(plate, rng)
        if read != plate:
            assert read[0] == plate[0]
            assert match(read, {plate}).kind is MatchKind.FUZZY


def test_a_barrier_obeys_jams_and_holds() -> None:
    b = Barrier("g")
    b.command("open")
    b.passed()
    assert b.state == "closed"
    b.command("alwaysOpen")
    b.passed()
    assert (b.state, b.held) == ("open", True)
    b.command("normal")
    assert b.state == "closed"
    b.jammed = True
    b.command("open")
    assert b.state == "closed" and b.commands == ["open", "alwaysOpen", "normal", "open"]
