"""The pieces every part of the site file shares: ids, topics, URLs, secret references,
TLS files, a device's `commands:`, and the located errors the loader turns into lines.

The core's models (`gateway.config`) and each driver's device model
(`drivers/<protocol>/config.py`) import these, so the site file's union is assembled
without an import cycle and without importing any driver's run loop.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]
# (location relative to the validated value, message, location of the first occurrence)
Found = tuple[Loc, str, Loc | None]


def located(found: list[Found]) -> PydanticCustomError:
    """One validation error carrying several precisely located issues for the loader."""
    summary = "; ".join(
        f"{dotted(loc)}: {msg}" + (f" (first at {dotted(first)})" if first else "")
        for loc, msg, first in found
    )
    return PydanticCustomError("located", "{summary}", {"summary": summary, "found": found})


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# --- field types ------------------------------------------------------------------------

# Ids become MQTT topic levels, metric label values and file names: keep them plain.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid id: use 1-64 lower-case letters, digits, '-' or '_'"
        )
    return value


def check_topic(value: str) -> str:
    if not value:
        raise ValueError("an MQTT topic must not be empty")
    if "+" in value or "#" in value:
        raise ValueError("an MQTT topic here names one device: no '+' or '#' wildcards")
    if value.startswith("/") or value.endswith("/"):
        raise ValueError("an MQTT topic must not start or end with '/'")
    if "//" in value:
        raise ValueError("an MQTT topic must not have an empty level ('//')")
    if value.startswith("$"):
        raise ValueError("topics starting with '$' belong to the broker")
    if "\x00" in value or len(value.encode()) > 65535:
        raise ValueError("not a valid MQTT topic")
    return value


def check_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
    return value


def check_url(value: str, schemes: tuple[str, ...], what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"{what} must start with " + " or ".join(f"{s}://" for s in schemes))
    if any(c.isspace() for c in value):
        raise ValueError(f"{what} must not contain spaces")
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "no credentials in a URL: secrets come from env/file/credential, never the site file"
        )
    if not parts.hostname:
        raise ValueError(f"{what} has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{what} has a bad port (1-65535)")
    return value


def check_rtsp(value: str) -> str:
    return check_url(value, ("rtsp", "rtsps"), "a camera stream URL")


def check_http(value: str) -> str:
    return check_url(value, ("http", "https"), "an HTTP URL")


def check_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


Name = Annotated[str, AfterValidator(check_name)]
Topic = Annotated[str, AfterValidator(check_topic)]
Text = Annotated[str, Field(min_length=1)]


class Model(BaseModel):
    # hide_input_in_errors: a mistyped secret must not reach a log through str(ValidationError).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class SecretRef(Model):
    """Where a secret lives (exactly one of env / file / credential); never the secret itself."""

    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    file: Text | None = None  # best absolute: a relative path follows the working directory
    # A systemd credential, read from $CREDENTIALS_DIRECTORY/<name> (LoadCredential=).
    credential: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")] | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_a_literal(cls, data: Any) -> Any:
        if isinstance(data, dict | SecretRef):
            return data
        raise PydanticCustomError(
            "literal_secret", "secrets come from env/file/credential, never the site file"
        )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [v for v in (self.env, self.file, self.credential) if v is not None]
        if len(given) != 1:
            raise ValueError("a secret reference takes exactly one of env, file or credential")
        return self


class TlsConfig(Model):
    """TLS on a link: the CA file that signs the server (default: the system's CAs) and,
    where the server asks for one, our client certificate and its key."""

    ca_file: Text | None = None
    cert_file: Text | None = None
    key_file: Text | None = None

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise located([(("key_file",), "a key_file needs its cert_file", None)])
        return self

    def files(self) -> Iterator[tuple[str, str]]:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None:
                yield name, value


CommandValue = float | int | str | bool


class CommandAllow(Model):
    """One action a device takes: a range (`min`/`max`) or a set (`values`) for its
    value, or neither for an action that takes no value (a barrier's `open`)."""

    action: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
    min: float | None = None
    max: float | None = None
    values: list[CommandValue] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _range_or_set(self) -> CommandAllow:
        ranged = self.min is not None or self.max is not None
        if ranged and self.values is not None:
            raise located([(("values",), "give a range (min/max) or a set, not both", None)])
        if self.min is not None and self.max is not None and self.min > self.max:
            raise located([(("min",), f"min {self.min:g} is above max {self.max:g}", None)])
        return self


class CommandRate(Model):
    # Per device, a token bucket: a burst for an operator's retries, then a steady rate.
    per_minute: float = Field(default=6.0, gt=0, le=600)
    burst: int = Field(default=3, ge=1, le=100)


class DeviceCommands(Model):
    """A device's `commands:`: what it may be told, and how often."""

    allow: list[CommandAllow] = Field(min_length=1)
    rate: CommandRate = Field(default_factory=CommandRate)

    @field_validator("allow")
    @classmethod
    def _unique(cls, value: list[CommandAllow]) -> list[CommandAllow]:
        seen: dict[str, int] = {}
        found: list[Found] = []
        for i, allow in enumerate(value):
            if allow.action in seen:
                found.append(((i, "action"), f"{allow.action} listed twice",
                              (seen[allow.action], "action")))
            seen.setdefault(allow.action, i)
        if found:
            raise located(found)
        return value
