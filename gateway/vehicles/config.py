"""The site file's `gates:` section: the plate push listener, the decision policy, the
fire linkage, and how long plate pictures are kept."""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config_parts import Model, SecretRef, Text, located
from gateway.vehicles.registry import VehicleClass


class PushListenerConfig(Model):
    # Cameras sit on the site LAN: the listener binds there, apart from the desk API, and
    # takes pushes only from the cameras' own addresses.
    host: Text = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # A push is a few kB of JSON or XML plus two JPEGs of some 100 kB.
    max_body_kb: int = Field(default=2048, ge=16, le=65536)
    max_picture_kb: int = Field(default=1024, ge=8, le=16384)
    # How long a camera waits for its answer; vendor cameras fall back to their own list
    # after 2-3 s, so the gateway answers "no" (fail safe) before that.
    decide_timeout_s: float = Field(default=1.5, gt=0, le=10)
    # A barrier's arm takes about 4 s: its state is read back for this long after a command.
    verify_s: float = Field(default=6.0, gt=0, le=9)


class GatesConfig(Model):
    listener: PushListenerConfig = Field(default_factory=PushListenerConfig)
    # Fuzzy matches (one OCR confusion) open only for these classes; others go to the desk.
    fuzzy_open: list[VehicleClass] = Field(
        default_factory=lambda: [VehicleClass.OFFICIAL, VehicleClass.STAFF])
    # A barrier open (or blocked) longer than this is a crowd at the gate.
    held_open_s: float = Field(default=120.0, gt=0, le=3600)
    # A loop passage without an opened read within this window is tailgating.
    tailgate_window_s: float = Field(default=15.0, gt=0, le=300)
    # A refused vehicle's alert clears after this long (or when the desk opens).
    refused_clear_s: float = Field(default=300.0, gt=0, le=86400)
    # A visitor still inside this long after the pass ran out; none: not watched.
    overstay_grace_s: float | None = Field(default=None, gt=0)
    # Fire linkage: re-send an unconfirmed open this often, this many times.
    linkage_retry_s: float = Field(default=5.0, gt=0, le=300)
    linkage_attempts: int = Field(default=5, ge=1, le=100)
    # Drills (zones in test mode) do not open the barriers unless this is set.
    open_on_drill: bool = False
    pictures_days: int = Field(default=30, ge=1, le=3650)
    # Plate reads and the other gate events in the store; none: `retention.events_days`.
    events_days: int | None = Field(default=None, ge=1, le=3650)
    # Forwarded alerts and logs carry a keyed hash of the plate instead of the plate.
    pseudonymise: bool = False
    pseudonym_key: SecretRef | None = None

    @model_validator(mode="after")
    def _key_when_pseudonymised(self) -> GatesConfig:
        if self.pseudonymise and self.pseudonym_key is None:
            raise located([(("pseudonym_key",), "pseudonymise needs a pseudonym_key", None)])
        return self
