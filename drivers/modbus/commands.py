"""What a Modbus device's `commands:` may name: a writable register of its profile (a
coil, FC01, or a holding register, FC03). Pure; `check-config` reports the rest."""

from __future__ import annotations

from drivers.modbus.config import ModbusDevice
from drivers.modbus.profile import Profile

WRITABLE = (1, 3)


def command_issues(device: ModbusDevice, profile: Profile) -> list[tuple[int, str]]:
    """(index in `commands.allow`, why it cannot be written) for each allowed action
    that is not a writable register of the device's profile."""
    if device.commands is None:
        return []
    out = []
    for i, allow in enumerate(device.commands.allow):
        try:
            reg = profile.register(allow.action)
        except KeyError:
            out.append((i, f"{allow.action} is not a register of {profile.profile}"))
            continue
        if reg.function not in WRITABLE:
            out.append((i, f"{allow.action} is read-only (function {reg.function:02d})"))
    return out
