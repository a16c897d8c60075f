"""MQTT-native devices: the fire system's heat detectors publishing JSON, and the codec
seam that lets other device families share a broker connection."""

from drivers.mqtt.codec import DeviceCodec
from drivers.mqtt.config import BrokerEndpoint
from drivers.mqtt.driver import MqttDeviceDriver
from drivers.mqtt.heat_detector import (
    DetectorMemory,
    HeatDetectorCodec,
    HeatDetectorProfile,
    decode_report,
    load_profile,
    normalise,
)
from drivers.mqtt.reports import DeviceBinding, ReportRouter

__all__ = [
    "BrokerEndpoint",
    "DetectorMemory",
    "DeviceBinding",
    "DeviceCodec",
    "HeatDetectorCodec",
    "HeatDetectorProfile",
    "MqttDeviceDriver",
    "ReportRouter",
    "decode_report",
    "load_profile",
    "normalise",
]
