"""What the MQTT driver needs to know: the site file's MQTT devices, and one broker
endpoint with the devices behind it. No paho here: the core validates the site file
without the MQTT stack."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from gateway.config_parts import DeviceCommands, Model, Name, Text, Topic

if TYPE_CHECKING:
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


DetectorClass = Literal["A1", "A1R", "A1S", "A2", "A2R", "A2S", "B", "BR", "BS", "C", "CR", "CS"]


class MqttDevice(Model):
    driver: Literal["mqtt"]
    id: Name
    kind: Literal["heat_detector"]
    zone: str
    broker: str
    topic: Topic
    profile: Text = "heat-detector"
    detector_class: DetectorClass = "A1R"
    heartbeat_s: float = Field(default=30.0, ge=1, le=3600)
    install_date: date | None = None
    enabled: bool = True
    commands: DeviceCommands | None = None

    @property
    def rate_of_rise(self) -> bool:
        """Class suffix R: the detector also alarms on a fast rise (EN 54-5)."""
        return self.detector_class.endswith("R")


class MqttGateDevice(Model):
    """A barrier gate controller on the site broker (a site-side MQTT bridge): it publishes
    plate reads, barrier states, loop passages and heartbeats on `<topic>/event` and takes
    commands on `<topic>/command`."""

    driver: Literal["mqtt_gate"]
    id: Name
    kind: Literal["barrier_gate"]
    zone: str
    broker: str
    topic: Topic
    direction: Literal["in", "out"] = "in"
    area: Name | None = None  # the zone behind the gate; none: the compound itself
    heartbeat_s: float = Field(default=30.0, gt=0, le=3600)
    reports_loop: bool = False
    enabled: bool = True
    commands: DeviceCommands | None = None
