"""The codec seam of the MQTT driver: one codec per device family (heat detectors, gate
controllers), chosen by each binding, so several families share a broker connection. A
codec is pure: payload -> report -> telemetry and change events, and a command -> the
message that tells the device."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from gateway.events import Event, Heartbeat, Reading


class DeviceCodec(Protocol):
    family: str
    # The event kind that records a command sent to the device (data: `commanded`,
    # `status`, `detail`), which the family's rules read; "" for a family without commands.
    told_kind: str

    def decode(self, payload: bytes) -> Any:
        """The device's report, or `PayloadRejected`; never any other exception."""

    def seq_of(self, report: Any) -> int | None:
        """The device's own sequence number, where it sends one."""

    def memory(self, known: Mapping[str, Any]) -> Any:
        """A device's flag memory, from what the store last knew (`known`)."""

    def copy(self, memory: Any) -> Any:
        """An independent copy of `memory`."""

    def repeat(self, report: Any, memory: Any) -> bool:
        """True for a report the device sent already, by its own id of it (dropped and
        counted as a duplicate); otherwise remembers that id in `memory`."""

    def command(self, topic: str, action: str, why: str) -> tuple[str, bytes] | None:
        """The (topic, payload) that tells the device on `topic` to do `action`, or None
        when the family takes no such command."""

    def normalise(
        self, source: str, zone: str, report: Any, memory: Any, now: float,
        next_seq: Callable[[str], int],
    ) -> tuple[list[Reading | Heartbeat], list[Event]]:
        """Telemetry plus the events of changed flags; updates `memory`."""
