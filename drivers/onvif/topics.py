"""What a camera's ONVIF event topics mean to the compound: a table from topic to the
gateway's event, and the reading of one notification's state (true/false). Pure: no
network, no library types (the adapter hands over plain `Notification`s)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from gateway.events import Severity


@dataclass(frozen=True, slots=True)
class Notification:
    """One PullPoint message, as plain data."""

    topic: str  # as the camera wrote it, prefixes and all: "tns1:VideoSource/MotionAlarm"
    operation: str = "Changed"  # PropertyOperation: Initialized, Changed or Deleted
    utc_time: str = ""
    source: dict[str, str] = field(default_factory=dict)  # SimpleItem Name -> Value
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Meaning:
    what: str  # the event's name: camera.<what> while true, camera.<what>.end after
    severity: Severity  # of the "true" event; its end is always info
    items: tuple[str, ...]  # the Data items that carry the state, in order of preference


MOTION: Final = Meaning("motion", Severity.INFO, ("IsMotion", "State"))
SCENE_CHANGE: Final = Meaning("scene_change", Severity.MAJOR, ("State",))
TOO_DARK: Final = Meaning("too_dark", Severity.MINOR, ("State",))
TOO_BLURRY: Final = Meaning("too_blurry", Severity.MINOR, ("State",))
TOO_BRIGHT: Final = Meaning("too_bright", Severity.MINOR, ("State",))
TAMPER: Final = Meaning("tamper", Severity.MAJOR, ("IsTamper", "State", "tampering", "Tamper"))

# Topics with their namespace prefixes taken off each element (cameras bind `tns1` and
# vendor prefixes as they like; the names after the colon are what is fixed).
# The image-quality topics end in the service that raised them: Imaging, Analytics or
# Recording; all three mean the same to the desk.
TOPICS: Final[dict[str, Meaning]] = {
    "VideoSource/MotionAlarm": MOTION,
    "RuleEngine/CellMotionDetector/Motion": MOTION,
    "RuleEngine/MotionRegionDetector/Motion": MOTION,
    **{f"VideoSource/GlobalSceneChange/{s}": SCENE_CHANGE
       for s in ("ImagingService", "AnalyticsService", "RecordingService")},
    **{f"VideoSource/ImageTooDark/{s}": TOO_DARK
       for s in ("ImagingService", "AnalyticsService", "RecordingService")},
    **{f"VideoSource/ImageTooBlurry/{s}": TOO_BLURRY
       for s in ("ImagingService", "AnalyticsService", "RecordingService")},
    **{f"VideoSource/ImageTooBright/{s}": TOO_BRIGHT
       for s in ("ImagingService", "AnalyticsService", "RecordingService")},
    # ONVIF Profile T's tamper detector.
    "RuleEngine/TamperDetector/Tamper": TAMPER,
    # Axis (tns1:VideoSource/tnsaxis:Tampering, state in `tampering`, 0 or 1).
    "VideoSource/Tampering": TAMPER,
}

_TRUE: Final = frozenset({"true", "1", "active", "on"})
_FALSE: Final = frozenset({"false", "0", "inactive", "off"})


def bare(topic: str) -> str:
    """The topic without namespace prefixes, element by element."""
    return "/".join(part.rpartition(":")[2] for part in topic.strip().split("/"))


def meaning_of(topic: str) -> Meaning | None:
    """What a topic means, or None for topics the compound does not watch. Vendor tamper
    topics not in the table are known by their last element naming tampering."""
    path = bare(topic)
    found = TOPICS.get(path)
    if found is not None:
        return found
    last = path.rpartition("/")[2].lower()
    if "tamper" in last:
        return TAMPER
    return None


def state_of(note: Notification, meaning: Meaning) -> bool | None:
    """True or false from the message's Data, or None when it says neither."""
    for name in meaning.items:
        value = note.data.get(name)
        if value is not None:
            return _bool(value)
    if len(note.data) == 1:  # one item of another name: a vendor's own
        return _bool(next(iter(note.data.values())))
    return None


def _bool(value: str) -> bool | None:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def source_key(note: Notification) -> str:
    """Which of the camera's sources (video source, rule) the message is about: states are
    tracked per topic and source, so two rules on one camera do not clear each other."""
    return ",".join(f"{k}={v}" for k, v in sorted(note.source.items()))[:200]
