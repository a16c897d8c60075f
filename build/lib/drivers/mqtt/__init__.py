"""MQTT-native devices: the fire system's heat detectors publishing JSON."""

from drivers.mqtt.config import BrokerEndpoint, DetectorBinding
from drivers.mqtt.driver import MqttDeviceDriver
from drivers.mqtt.heat_detector import (
    DetectorMemory,
    HeatDetectorProfile,
    decode_report,
    load_profile,
    normalise,
)

__all__ = [
    "BrokerEndpoint",
    "DetectorBinding",
    "DetectorMemory",
    "HeatDetectorProfile",
    "MqttDeviceDriver",
    "decode_report",
    "load_profile",
    "normalise",
]
