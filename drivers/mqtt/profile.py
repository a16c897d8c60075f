"""A heat detector profile file (`config/profiles/heat-detector.yaml`), checked by a typed
model at load: a missing key, a wrong type or an inverted range is a `ProfileError` that
names the file and the key, never a KeyError deep in start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.errors import ConfigError


class ProfileError(ConfigError):
    """A profile that cannot be used, with its file and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Range(_Strict):
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if self.min >= self.max:
            raise ValueError(f"min {self.min:g} is not below max {self.max:g}")
        return self


class HeatDetectorProfileFile(_Strict):
    profile: str = Field(min_length=1)
    kind: Literal["heat_detector"] = "heat_detector"
    max_payload_bytes: int = Field(ge=64, le=1_048_576)
    temperature_c: _Range
    battery_pct: _Range
    faults: dict[str, str] = Field(default_factory=dict)


def read_profile(path: Path) -> HeatDetectorProfileFile:
    """The profile in `path`, checked; a `ProfileError` naming the file and key if not."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a profile is a mapping of keys")
    try:
        model = HeatDetectorProfileFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(file)"
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ProfileError(f"{path}: {where}: {msg}") from None
    if model.profile != path.stem:
        raise ProfileError(f"{path}: profile: says {model.profile!r}, the file is {path.stem!r}")
    return model
