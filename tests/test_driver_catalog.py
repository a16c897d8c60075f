"""Which drivers a build has, and the site file's models apart from the driver stacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.catalog import CATALOG, DriverSpec, not_installed, why_missing
from drivers.mqtt.profile import ProfileError, read_profile

ROOT = Path(__file__).resolve().parent.parent


def test_the_built_drivers_are_installed() -> None:
    assert not_installed("mqtt") is None
    assert not_installed("modbus") is None


def test_every_site_file_driver_has_an_entry() -> None:
    from typing import get_args

    from gateway.config import Device

    union = get_args(get_args(Device)[0])
    drivers = {get_args(model.model_fields["driver"].annotation)[0] for model in union}
    assert drivers == set(CATALOG)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (DriverSpec("x", "drivers.mqtt.driver", ("no_such_stack_pkg",)),
         "driver 'x' needs the Python package(s) no_such_stack_pkg"),
        (DriverSpec("x", "drivers.no_such_driver", ("yaml",)),
         "driver 'x' is not installed in this build (no drivers.no_such_driver)"),
        (DriverSpec("x", "drivers.mqtt.driver", ("yaml",)), None),
    ],
)
def test_why_a_driver_is_missing(spec: DriverSpec, reason: str | None) -> None:
    assert why_missing(spec) == reason


def test_an_unknown_driver_is_named() -> None:
    assert not_installed("bacnet") == "no driver 'bacnet' in this build"


def test_the_site_model_imports_no_protocol_stack() -> None:
    probe = (
        "import sys, gateway.config\n"
        "heavy = [m for m in ('paho', 'pymodbus', 'serial', 'aiohttp', 'drivers.mqtt.driver',"
        " 'drivers.modbus.driver') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_shipped_heat_profile_is_sound() -> None:
    model = read_profile(ROOT / "config" / "profiles" / "heat-detector.yaml")
    assert model.temperature_c.min < model.temperature_c.max
    assert "tamper" in model.faults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profile: p\nmax_payload_bytes: 4096\nbattery_pct: {min: 0, max: 100}\n",
         "temperature_c: Field required"),
        ("profile: p\nmax_payload_bytes: lots\ntemperature_c: {min: 0, max: 1}\n"
         "battery_pct: {min: 0, max: 100}\n", "max_payload_bytes:"),
        ("profile: p\nmax_payload_bytes: 4096\ntemperature_c: {min: 0, max: 1}\n"
         "battery_pct: {min: 0, max: 100}\nfaults: {}\nextra: 1\n", "extra: Extra inputs"),
        ("profile: q\nmax_payload_bytes: 4096\ntemperature_c: {min: 0, max: 1}\n"
         "battery_pct: {min: 0, max: 100}\n", "profile: says 'q', the file is 'p'"),
        ("- a list\n", "a profile is a mapping"),
        ("a: [\n", "not YAML"),
    ],
)
def test_a_bad_heat_profile_names_its_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        read_profile(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
