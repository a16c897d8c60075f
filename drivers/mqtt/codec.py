"""The codec seam of the MQTT driver: one codec per device family (heat detectors today,
gate controllers and others next), chosen by each binding, so several families share a
broker connection. A codec is pure: payload -> report -> telemetry and change events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from gateway.events import Event, Heartbeat, Reading


class DeviceCodec(Protocol):
    family: str

    def decode(self, payload: bytes) -> Any:
        """The device's report, or `PayloadRejected`; never any other exception."""

    def seq_of(self, report: Any) -> int | None:
        """The device's own sequence number, where it sends one."""

    def memory(self, known: Mapping[str, Any]) -> Any:
        """A device's flag memory, from what the store last knew (`known`)."""

    def copy(self, memory: Any) -> Any:
        """An independent copy of `memory`."""

    def normalise(
        self, source: str, zone: str, report: Any, memory: Any, now: float,
        next_seq: Callable[[str], int],
    ) -> tuple[list[Reading | Heartbeat], list[Event]]:
        """Telemetry plus the events of changed flags; updates `memory`."""
