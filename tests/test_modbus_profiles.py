"""Every Modbus profile loads and decodes its golden words; bad profiles are refused with
the file, the line and the key."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.modbus.blocks import Tag, decode, encode
from drivers.modbus.profile import WIDTH, ProfileError, load_profile, load_profiles
from gateway.config import check_config

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "config" / "profiles"
GOLDEN: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "cases" / "modbus" / "golden.yaml").read_text(encoding="utf-8"))


def test_every_profile_loads_and_is_sound() -> None:
    profiles = load_profiles(PROFILES)
    assert {"eastron-sdm630", "chint-dtsu666", "acrel-adw300", "water-meter", "gas-meter",
            "relay-io", "temperature-humidity"} <= set(profiles)  # status: test_modbus_status
    for profile in profiles.values():
        for reg in profile.registers:
            assert reg.width == WIDTH[reg.type]
            if reg.kind == "counter":
                # A counter without a bound on its rise could sum any glitch.
                assert reg.max_rise_per_h is not None, reg.metric
                assert reg.plausible is not None and reg.plausible.min >= 0, reg.metric
            if reg.metric.startswith("voltage_"):
                assert reg.plausible is not None
                assert (reg.plausible.min, reg.plausible.max) == (180, 260)
            if reg.metric == "power_factor":
                assert reg.plausible is not None
                assert (reg.plausible.min, reg.plausible.max) == (-1, 1)
            # Round trip through the simulator's encoder.
            value = 7.0 if reg.type == "bits" else 123.0
            got = decode(reg, encode(reg, value, profile.word_order_of(reg)),
                         profile.word_order_of(reg))
            assert math.isclose(got, value, rel_tol=1e-6), reg.metric


def test_chint_energy_block_has_both_firmware_addresses() -> None:
    reg = load_profile(PROFILES / "chint-dtsu666.yaml").register("energy_import_kwh")
    assert (reg.address, reg.alternate_address) == (0x101E, 0x401E)


@pytest.mark.parametrize("case", GOLDEN, ids=[c["profile"] for c in GOLDEN])
def test_golden_words_decode_to_readings(case: dict[str, Any]) -> None:
    profile = load_profile(PROFILES / f"{case['profile']}.yaml")
    words: dict[tuple[int, int], int] = {}
    for function, start, values in case["words"]:
        for i, value in enumerate(values):
            words[(function, start + i)] = value
    for metric, want in case["values"].items():
        reg = profile.register(metric)
        regs = [words[(reg.function, reg.address + i)] for i in range(reg.width)]
        tag = Tag(reg, reg.address, profile.word_order_of(reg))
        assert decode(tag.register, regs, tag.word_order) == pytest.approx(want, rel=1e-6)


HEAD = "profile: broken\nregisters:\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  - {metric: a, function: 3, address: 0, type: float32}\n"
         "  - {metric: b, function: 3, address: 1, type: uint16}\n",
         "broken.yaml:4 registers[1]: b at FC03 0x0001 overlaps registers[0] a (0x0000-0x0001)"),
        ("  - {metric: a, function: 3, address: 0, type: float16}\n",
         "broken.yaml:3 registers[0].type: Input should be 'int16'"),
        ("  - {metric: a, function: 2, address: 0, type: uint16}\n",
         "broken.yaml:3 registers[0]: function 02 reads bits: type must be bits"),
        ("  - {metric: a, function: 3, address: 0, type: uint16}\n"
         "  - {metric: a, function: 3, address: 5, type: uint16}\n",
         "broken.yaml:4 registers[1]: metric 'a' is already registers[0]"),
        ("  - {metric: a, function: 3, address: 0, type: uint16, colour: red}\n",
         "broken.yaml:3 registers[0].colour: Extra inputs are not permitted"),
        ("  - {metric: a, function: 3, address: 0xFFFF, type: uint32}\n",
         "broken.yaml:3 registers[0]: a runs past 0xFFFF"),
    ],
)
def test_bad_profiles_are_refused_with_the_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(HEAD + body, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(caught.value).removeprefix(f"{tmp_path}/").startswith(message), str(caught.value)


def test_a_missing_profile_is_named(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        load_profile(tmp_path / "nope.yaml")


def test_overlaps_are_per_function_table(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("profile: ok\nregisters:\n"
                    "  - {metric: a, function: 3, address: 0, type: float32}\n"
                    "  - {metric: b, function: 4, address: 0, type: float32}\n", encoding="utf-8")
    assert [r.metric for r in load_profile(path).registers] == ["a", "b"]


def test_check_config_names_a_bad_profile_and_its_line(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "broken.yaml").write_text(
        HEAD + "  - {metric: a, function: 3, address: 0, type: float32}\n"
        "  - {metric: b, function: 3, address: 1, type: uint16}\n", encoding="utf-8")
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: furong, name: Furong test}\n"
        "buildings:\n"
        "  - {id: main, name: main, zones: [{id: plant, name: plant room}]}\n"
        "devices:\n"
        "  - {driver: modbus, id: em-1, kind: energy_meter, zone: plant,\n"
        "     address: 'tcp://198.51.100.10:502/1', profile: broken}\n", encoding="utf-8")
    (issue,) = check_config(site, environ={})
    assert (issue.line, issue.key) == (6, "devices[0].profile")
    assert issue.message.startswith("bad profile: ")
    assert "broken.yaml:4 registers[1]: b at FC03 0x0001 overlaps" in issue.message
