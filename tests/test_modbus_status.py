"""Elevator and fire panel status words decode as their profiles say (golden cases, one
or more per vendor variant), and a bad status section is refused with its line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.blocks import Tag, decode, plan
from drivers.modbus.profile import Profile, ProfileError, load_profile, load_profiles
from drivers.modbus.status import (
    ElevatorStatus,
    PanelStatus,
    decode_lift,
    decode_panel,
)

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "config" / "profiles"
GOLDEN: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "cases" / "modbus" / "status_golden.yaml").read_text("utf-8"))


def _values(profile: Profile, words: list[list[Any]]) -> dict[str, float]:
    """What the driver hands on from one poll: every register fully covered by the words."""
    table: dict[tuple[int, int], int] = {}
    for function, start, regs in words:
        for i, value in enumerate(regs):
            table[(function, start + i)] = value
    out: dict[str, float] = {}
    for reg in profile.registers:
        addresses = [(reg.function, reg.address + i) for i in range(reg.width)]
        if all(a in table for a in addresses):
            tag = Tag(reg, reg.address, profile.word_order_of(reg))
            out[reg.metric] = decode(reg, [table[a] for a in addresses], tag.word_order)
    return out


def test_every_vendor_variant_has_golden_cases() -> None:
    status_profiles = {name for name, p in load_profiles(PROFILES).items() if p.status}
    assert status_profiles == {"elevator-sanling", "elevator-otis", "elevator-jianghong",
                               "fire-panel-gateway"}
    assert status_profiles == {case["profile"] for case in GOLDEN}


@pytest.mark.parametrize("case", GOLDEN, ids=[c["case"] for c in GOLDEN])
def test_golden_status_words(case: dict[str, Any]) -> None:
    profile = load_profile(PROFILES / f"{case['profile']}.yaml")
    values = _values(profile, case["words"])
    for metric, want in case.get("values", {}).items():
        assert values[metric] == pytest.approx(want), metric
    problems: list[str] = []
    spec = profile.status
    if isinstance(spec, ElevatorStatus):
        if "state" not in case:
            return
        lowest, highest = case.get("floors", [None, None])
        decoded = decode_lift(spec, values, firmware=case.get("firmware", "default"),
                              lowest=lowest, highest=highest)
        assert decoded is not None
        got = decoded.state.to_data()
        for key, want in case["state"].items():
            assert got[key] == want, key
        problems = [reason for reason, _ in decoded.problems]
    else:
        assert isinstance(spec, PanelStatus)
        panel = decode_panel(spec, values)
        assert panel is not None
        assert sorted(panel.panel) == sorted(case["panel"])
        for number, bits in case["points"].items():
            assert sorted(panel.points[int(number)]) == sorted(bits), number
        problems = [reason for reason, _ in panel.problems]
    assert problems == case.get("problems", [])


def test_panel_points_are_planned_as_few_block_reads() -> None:
    profile = load_profile(PROFILES / "fire-panel-gateway.yaml")
    blocks = plan(Tag(r, r.address, "big") for r in profile.registers)
    # The panel word, and all 64 point words in one read.
    assert [(b.start, b.count) for b in blocks] == [(0x0000, 1), (0x0100, 64)]


@settings(max_examples=200, deadline=None)
@given(word=st.integers(0, 0xFFFF), floor=st.integers(0, 0xFFFF), mode=st.integers(0, 0xFFFF),
       fault=st.integers(0, 0xFFFF))
def test_any_sanling_word_decodes_or_names_its_problem(word: int, floor: int, mode: int,
                                                       fault: int) -> None:
    profile = load_profile(PROFILES / "elevator-sanling.yaml")
    assert isinstance(profile.status, ElevatorStatus)
    values = _values(profile, [[3, 0, [word, floor, mode, fault, 0]]])
    decoded = decode_lift(profile.status, values, lowest=-2, highest=20)
    assert decoded is not None
    reasons = {r for r, _ in decoded.problems}
    assert (decoded.state.floor is None) == ("impossible_floor" in reasons)
    assert (decoded.state.direction == "unknown") == ("contradictory_status" in reasons)
    assert (decoded.state.fault.startswith("unknown")) == ("unknown_fault_code" in reasons)
    assert decoded.state.fault_code == fault


HEAD = ("profile: broken\nregisters:\n"
        "  - {metric: w, function: 3, address: 0, type: bits}\n")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("status:\n  kind: fire_panel\n  panel: w\n  panel_bits: {0: bus_fault}\n"
         "  points: pts\n  point_bits: {1: fire}\n",
         "no registers named pts_NNN"),
        ("status:\n  kind: fire_panel\n  panel: w\n  panel_bits: {0: bus_fault}\n"
         "  points: w\n  point_bits: {1: flames}\n",
         "broken.yaml:9 status.point_bits.1: Input should be 'test'"),
        ("  - {metric: p, function: 3, address: 9, type: bits, repeat: 0}\n",
         "repeat must be a whole number 1-999"),
        ("status:\n  kind: elevator\n  moving: {metric: w, bit: 0, when: [1]}\n",
         "give a bit or the values (when), exactly one"),
    ],
)
def test_bad_status_sections_are_refused(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(HEAD + body, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert message in str(caught.value), str(caught.value)
