"""The site file's HTTP-push devices: a plate camera at a barrier gate, attributed to its
gate by its source address."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator

from gateway.config_parts import DeviceCommands, Model, Name, check_ip


class HttpPushDevice(Model):
    driver: Literal["http_push"]
    id: Name
    kind: Literal["barrier_gate"]
    zone: str
    # The plate camera's address: a push is attributed to its gate by source address.
    address: Annotated[str, AfterValidator(check_ip)]
    vendor: Literal["vzenith", "hikvision", "dahua"]
    enabled: bool = True
    commands: DeviceCommands | None = None
