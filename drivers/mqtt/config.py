"""What the MQTT driver needs to know: one broker endpoint and the devices behind it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.mqtt_loop import Tls


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    keepalive_s: float = 12
    client_id: str | None = None
    tls: Tls | None = None

    def __repr__(self) -> str:  # never let a password reach a log line
        return f"BrokerEndpoint({self.host}:{self.port}, user={self.username!r})"
