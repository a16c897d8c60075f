"""Secrets: resolved at run time from an environment variable, a file or a systemd credential.

The site file only says where a secret lives (`SecretRef`); its value never passes through
YAML, logs or error messages.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.config import SecretRef


class Secret:
    """A resolved secret that prints as *** so it cannot leak through a log line or repr."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(Secret)


def resolve_secret(ref: SecretRef, environ: Mapping[str, str] | None = None) -> str:
    """The secret's value; ConfigError names where it was looked for, never what was found."""
    env = os.environ if environ is None else environ
    if ref.env is not None:
        value = env.get(ref.env)
        if value is None:
            raise ConfigError(f"secret {ref.env} is not set")
        if not value:
            raise ConfigError(f"secret {ref.env} is empty")
        return value
    if ref.file is not None:
        return _read(Path(ref.file), f"secret file {ref.file}")
    if ref.credential is not None:
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(
                f"secret credential {ref.credential}: CREDENTIALS_DIRECTORY is not set "
                "(the service must be started with LoadCredential=)"
            )
        return _read(Path(directory) / ref.credential, f"secret credential {ref.credential}")
    raise ConfigError("a secret reference names no env, file or credential")


def _read(path: Path, label: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{label} cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # The decoder's own message quotes the offending byte: a piece of the secret.
        raise ConfigError(f"{label} is not UTF-8 text") from None
    # `echo secret > file` leaves a newline that is not part of the password.
    value = text.removesuffix("\n").removesuffix("\r")
    if not value:
        raise ConfigError(f"{label} is empty")
    return value
