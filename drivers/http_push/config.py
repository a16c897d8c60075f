"""The site file's HTTP-push devices: a plate camera at a barrier gate, attributed to its
gate by its source address (and, where the camera can send one, a per-camera secret)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from gateway.config_parts import DeviceCommands, Model, Name, SecretRef, check_http, check_ip


def _not_dahua(value: object) -> object:
    """Dahua's ITSAPI push is a vendor protocol whose format the gateway does not speak
    (nor does the site's documentation describe it): refused by name rather than taken
    and then every push refused."""
    if value == "dahua":
        raise ValueError("'dahua' is not supported: the gateway takes Vzenith-style"
                         " (JSON AlarmInfoPlate) and Hikvision-style (multipart anpr.xml)"
                         " pushes only; a Dahua ITSAPI camera cannot be configured yet")
    return value


class HttpPushDevice(Model):
    driver: Literal["http_push"]
    id: Name
    kind: Literal["barrier_gate"]
    zone: str
    # The plate camera's address: a push is attributed to its gate by source address.
    address: Annotated[str, AfterValidator(check_ip)]
    vendor: Annotated[Literal["vzenith", "hikvision"], BeforeValidator(_not_dahua)]
    enabled: bool = True
    commands: DeviceCommands | None = None
    # Sent by the camera as the push URL's `key` or as the HTTP Basic password; a camera
    # that can send none is known by its address alone.
    secret: SecretRef | None = None
    direction: Literal["in", "out"] = "in"
    # The zone the gate lets vehicles into (a car park); none: the compound itself.
    area: Name | None = None
    # The camera's heartbeat interval: silent for 3 x this, the gate is offline.
    heartbeat_s: float = Field(default=30.0, gt=0, le=3600)
    # The barrier's HTTP control (ISAPI-style barrierGate): commands go there and the
    # barrier's state is read back. Without it a Vzenith camera is told in the reply to
    # its next heartbeat, unverified.
    gate_api: Annotated[str, AfterValidator(check_http)] | None = None
    # The barrier reports its vehicle loop (passages), so a passage without a read shows.
    reports_loop: bool = False
