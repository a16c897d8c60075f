"""Which drivers this build has: for each `driver:` of the site file, the module that runs
its devices and the protocol stack it imports. `check-config` refuses an enabled device
whose driver is missing here, instead of the daemon finding out at start-up (or never)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DriverSpec:
    name: str
    run_module: str  # the module that runs this driver's devices
    needs: tuple[str, ...]  # the Python packages of its protocol stack


CATALOG: dict[str, DriverSpec] = {
    spec.name: spec
    for spec in (
        DriverSpec("mqtt", "drivers.mqtt.driver", ("paho",)),
        DriverSpec("modbus", "drivers.modbus.driver", ("pymodbus", "serial")),
        DriverSpec("http_push", "drivers.http_push.listener", ("aiohttp",)),
        DriverSpec("mqtt_gate", "drivers.mqtt.driver", ("paho",)),  # the gate codec
        DriverSpec("rtsp", "drivers.rtsp.driver", ("av", "onvif")),  # the camera extra
    )
}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def not_installed(driver: str) -> str | None:
    """Why `driver` cannot run in this build, or None when it can."""
    spec = CATALOG.get(driver)
    if spec is None:
        return f"no driver {driver!r} in this build"
    return why_missing(spec)


def why_missing(spec: DriverSpec) -> str | None:
    lacking = [m for m in spec.needs if not _present(m)]
    if lacking:
        return f"driver {spec.name!r} needs the Python package(s) {', '.join(lacking)}"
    if not _present(spec.run_module):
        return f"driver {spec.name!r} is not installed in this build (no {spec.run_module})"
    return None
