"""Cameras: a stream that stays lost, or stays at a low frame rate, is an alert. The
stream monitor's supervisor says `camera.stream.down` / `.degraded` / `.up` on each
transition; an alert fires once the condition has held `for` its duration (a reconnect
of a second is no blind spot) and clears when the stream is back.

The picture's state comes as `camera.image.<state>` once several keyframes in a row
agreed (the driver debounces): `camera.picture_<state>` fires at once and clears on
`camera.image.ok` or when another bad state replaces it.

From ONVIF: the camera's own analytics say `camera.<what>` while a condition holds and
`camera.<what>.end` when it is over; tampering, a changed scene (moved, covered) and a
picture too dark, too blurry or too bright alert until their end; motion is only an
event. A `clock_drift_s` reading beyond `clock_drift_max_s` either way fires
`camera.clock_drift` (the camera's timestamps, and its recordings', are wrong), cleared
once it is back within 80% of the limit, so a clock at the edge does not flap."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.errors import ConfigError
from gateway.events import Event, Heartbeat, Reading, Severity

STREAM_LOST = "camera.stream_lost"
LOW_FPS = "camera.low_fps"
_KINDS = {"camera.stream.down": STREAM_LOST, "camera.stream.degraded": LOW_FPS}
_SEVERITY = {STREAM_LOST: Severity.MAJOR, LOW_FPS: Severity.MINOR}
_WHAT = {STREAM_LOST: "stream lost", LOW_FPS: "low frame rate"}

_NOTHING: list[AlertSignal] = []
PICTURE = "camera.picture_"
# Covered and moved may be tampering: a person at the camera. The others are maintenance.
_PICTURE_SEVERITY = {"black": Severity.MAJOR, "blank": Severity.MAJOR,
                     "covered": Severity.MAJOR, "blurred": Severity.MINOR,
                     "frozen": Severity.MAJOR, "moved": Severity.MAJOR}


# ONVIF events (drivers.onvif.topics) that alert while they hold: event what -> rule.
_ONVIF_RULES = {"tamper": "camera.tampering", "scene_change": "camera.scene_changed",
                "too_dark": "camera.too_dark", "too_blurry": "camera.too_blurry",
                "too_bright": "camera.too_bright"}
_ONVIF_SEVERITY = {"camera.tampering": Severity.MAJOR, "camera.scene_changed": Severity.MAJOR,
                   "camera.too_dark": Severity.MINOR, "camera.too_blurry": Severity.MINOR,
                   "camera.too_bright": Severity.MINOR}
_ONVIF_WHAT = {"camera.tampering": "tampering", "camera.scene_changed": "scene changed",
               "camera.too_dark": "picture too dark", "camera.too_blurry": "picture too blurry",
               "camera.too_bright": "picture too bright"}
CLOCK_DRIFT = "camera.clock_drift"
DRIFT_METRIC = "clock_drift_s"
_DRIFT_CLEARS_AT = 0.8  # of the limit: a clock hovering at the edge does not flap


def drift_verdict(drift_s: float, max_s: float, firing: bool) -> bool:
    """Whether the clock-drift alert should be firing after this reading."""
    off = abs(drift_s)
    if firing:
        return off > max_s * _DRIFT_CLEARS_AT
    return off > max_s


@dataclass(frozen=True, slots=True)
class CameraSpec:
    id: str
    zone: str


class _Camera:
    __slots__ = ("drifting", "firing", "onvif", "pending", "picture", "reason", "since",
                 "spec")

    def __init__(self, spec: CameraSpec) -> None:
        self.spec = spec
        self.pending: str | None = None  # the rule whose condition holds, not yet firing
        self.firing: str | None = None
        self.since = 0.0
        self.reason = ""
        self.picture: str | None = None  # the firing picture rule
        self.onvif: set[str] = set()  # the firing ONVIF rules
        self.drifting = False


class CameraRules:
    """Per camera at most one condition at a time: a lost stream supersedes a slow one."""

    name = "cameras"

    def __init__(self, cameras: Iterable[CameraSpec], *, down_for_s: float = 30.0,
                 degraded_for_s: float = 60.0, clock_drift_max_s: float = 30.0) -> None:
        if down_for_s < 0 or degraded_for_s < 0:
            raise ConfigError("cameras: `for` durations must not be negative")
        if clock_drift_max_s <= 0:
            raise ConfigError("cameras: clock_drift_max_s must be positive")
        self._drift_max = clock_drift_max_s
        self._for = {STREAM_LOST: down_for_s, LOW_FPS: degraded_for_s}
        self._cameras: dict[str, _Camera] = {}
        for spec in cameras:
            if spec.id in self._cameras:
                raise ConfigError(f"camera {spec.id}: listed twice")
            self._cameras[spec.id] = _Camera(spec)

    def restore(self, firing: Iterable[Alert]) -> None:
        for alert in firing:
            cam = self._cameras.get(alert.source)
            if cam is None or alert.state is not AlertState.FIRING:
                continue
            if alert.rule in _SEVERITY:
                cam.firing = alert.rule
            elif alert.rule.startswith(PICTURE):
                cam.picture = alert.rule
            elif alert.rule in _ONVIF_SEVERITY:
                cam.onvif.add(alert.rule)
            elif alert.rule == CLOCK_DRIFT:
                cam.drifting = True

    def sources(self) -> Collection[str]:
        """Only its own cameras' items can make it speak."""
        return self._cameras.keys()

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> list[AlertSignal]:
        if not isinstance(item, Event):
            if isinstance(item, Reading) and item.metric == DRIFT_METRIC:
                drifting = self._cameras.get(item.source)
                if drifting is not None:
                    return self._drift(drifting, item.value)
            return _NOTHING
        if not item.kind.startswith("camera."):
            return _NOTHING
        cam = self._cameras.get(item.source)
        if cam is None:
            return _NOTHING
        if item.kind.startswith("camera.image."):
            return self._picture(cam, item)
        if not item.kind.startswith("camera.stream."):
            return self._onvif(cam, item)
        rule = _KINDS.get(item.kind)
        if rule is None and item.kind != "camera.stream.up":
            return _NOTHING
        out: list[AlertSignal] = []
        if cam.firing is not None and cam.firing != rule:
            out.append(self._signal(cam, cam.firing, now, active=False))
            cam.firing = None
        if rule is None or cam.firing == rule:
            cam.pending = None
            return out or _NOTHING
        if cam.pending != rule:
            cam.pending, cam.since = rule, now
            cam.reason = str(item.data.get("reason", ""))[:200]
        out += self._due(cam, now)
        return out or _NOTHING

    def _picture(self, cam: _Camera, item: Event) -> list[AlertSignal]:
        state = item.kind.removeprefix("camera.image.")
        if state != "ok" and state not in _PICTURE_SEVERITY:
            return _NOTHING
        rule = None if state == "ok" else PICTURE + state
        if rule == cam.picture:
            return _NOTHING
        out: list[AlertSignal] = []
        spec = cam.spec
        if cam.picture is not None:
            old = cam.picture.removeprefix(PICTURE)
            out.append(AlertSignal(cam.picture, spec.id, spec.zone, _PICTURE_SEVERITY[old],
                                   False, f"Camera {spec.id}: picture no longer {old}"))
        cam.picture = rule
        if rule is not None:
            out.append(AlertSignal(rule, spec.id, spec.zone, _PICTURE_SEVERITY[state], True,
                                   f"Camera {spec.id}: picture {state}", dict(item.data)))
        return out

    def _onvif(self, cam: _Camera, item: Event) -> list[AlertSignal]:
        what = item.kind.removeprefix("camera.")
        active = not what.endswith(".end")
        rule = _ONVIF_RULES.get(what.removesuffix(".end"))
        if rule is None or (rule in cam.onvif) == active:
            return _NOTHING
        spec = cam.spec
        label = _ONVIF_WHAT[rule]
        if active:
            cam.onvif.add(rule)
            return [AlertSignal(rule, spec.id, spec.zone, _ONVIF_SEVERITY[rule], True,
                                f"Camera {spec.id}: {label}", dict(item.data))]
        cam.onvif.discard(rule)
        return [AlertSignal(rule, spec.id, spec.zone, _ONVIF_SEVERITY[rule], False,
                            f"Camera {spec.id}: {label} no more")]

    def _drift(self, cam: _Camera, drift_s: float) -> list[AlertSignal]:
        firing = drift_verdict(drift_s, self._drift_max, cam.drifting)
        if firing == cam.drifting:
            return _NOTHING
        cam.drifting = firing
        spec = cam.spec
        if firing:
            way = "ahead" if drift_s > 0 else "behind"
            return [AlertSignal(CLOCK_DRIFT, spec.id, spec.zone, Severity.MINOR, True,
                                f"Camera {spec.id}: clock {abs(drift_s):.0f} s {way}",
                                {"clock_drift_s": drift_s, "max_s": self._drift_max})]
        return [AlertSignal(CLOCK_DRIFT, spec.id, spec.zone, Severity.MINOR, False,
                            f"Camera {spec.id}: clock right again ({drift_s:+.0f} s)")]

    def tick(self, now: float) -> list[AlertSignal]:
        out = _NOTHING
        for cam in self._cameras.values():
            if cam.pending is not None:
                fired = self._due(cam, now)
                if fired:
                    out = fired if out is _NOTHING else [*out, *fired]
        return out

    def _due(self, cam: _Camera, now: float) -> list[AlertSignal]:
        rule = cam.pending
        if rule is None or now - cam.since < self._for[rule]:
            return _NOTHING
        cam.pending, cam.firing = None, rule
        return [self._signal(cam, rule, now, active=True)]

    def _signal(self, cam: _Camera, rule: str, now: float, *, active: bool) -> AlertSignal:
        what = _WHAT[rule]
        if active:
            summary = f"Camera {cam.spec.id}: {what} for {now - cam.since:.0f} s ({cam.reason})"
        else:
            summary = f"Camera {cam.spec.id}: {what} no more"
        return AlertSignal(rule, cam.spec.id, cam.spec.zone, _SEVERITY[rule], active, summary,
                           {"reason": cam.reason} if active else {})
