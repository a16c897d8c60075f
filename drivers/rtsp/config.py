"""The site file's cameras: the stream's address, ONVIF's, and a login that is a
secret reference, never the secret."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from gateway.config_parts import (
    DeviceCommands,
    Model,
    Name,
    SecretRef,
    check_http,
    check_rtsp,
    located,
)


class CameraDevice(Model):
    driver: Literal["rtsp"]
    id: Name
    kind: Literal["camera"]
    zone: str
    address: Annotated[str, AfterValidator(check_rtsp)]
    onvif: Annotated[str, AfterValidator(check_http)] | None = None
    # The stream's and ONVIF's login: a reference, never the secret (nor in the URL).
    username: str | None = None
    password: SecretRef | None = None
    enabled: bool = True
    # Below this the stream is degraded; unset: half the rate the camera advertises (or
    # first shows).
    min_fps: Annotated[float, Field(gt=0, le=120)] | None = None
    # One keyframe is decoded for picture health this often (staggered by camera); three
    # bad ones in a row make a picture fault, so the default tells one within 60 s.
    picture_every_s: float = Field(default=15.0, ge=1, le=600)
    commands: DeviceCommands | None = None

    @model_validator(mode="after")
    def _password_needs_username(self) -> CameraDevice:
        if self.password is not None and self.username is None:
            raise located([(("password",), "a password needs a username", None)])
        return self


class CameraRulesConfig(Model):
    """`rules.cameras` in the site file: how long a stream stays lost, or slow, before it
    is an alert (a reconnect of a second is no blind spot), and how far a camera's clock
    may drift."""

    down_for_s: float = Field(default=30.0, ge=0, le=3600)
    degraded_for_s: float = Field(default=60.0, ge=0, le=3600)
    # A camera clock (ONVIF) further off than this, either way, is an alert: its
    # timestamps and recordings no longer match the other cameras'.
    clock_drift_max_s: float = Field(default=30.0, gt=0, le=86400)
