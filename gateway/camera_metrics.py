"""Per-camera stream gauges for Prometheus, read at scrape time from what each camera's
stream monitor measured, and its ONVIF monitor's (up, clock drift, device information).
Labels are bounded: the camera's id and zone from the site file (the info gauge adds one
series per camera: its make, model and firmware)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

# The picture states a stream monitor tells (drivers.rtsp.picture.Picture), one series each.
PICTURE_STATES = ("ok", "black", "blank", "covered", "blurred", "frozen", "moved")


class StreamFigures(Protocol):
    """What a stream monitor measured (drivers.rtsp.health.Snapshot has these fields)."""

    @property
    def fps(self) -> float | None: ...
    @property
    def bitrate_bps(self) -> float: ...
    @property
    def lost(self) -> int: ...
    @property
    def keyframe_interval_s(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class WatchedCamera:
    camera: str
    zone: str
    figures: Callable[[], StreamFigures | None]  # None while no stream is playing
    state: Callable[[], object]  # the supervisor's link state: up, degraded, down, stale
    # (state, likeness): the judged picture and its edge map against the reference view.
    picture: Callable[[], tuple[str, float | None]] | None = None


@dataclass(frozen=True, slots=True)
class OnvifCamera:
    camera: str
    zone: str
    drift: Callable[[], float | None]  # the camera's clock minus the gateway's, seconds
    state: Callable[[], object]  # the ONVIF supervisor's link state
    info: Callable[[], tuple[str, str, str] | None]  # manufacturer, model, firmware


class CameraGauges:
    """A collector on the gateway's registry; `bind` swaps the cameras (a core rebuild)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._cameras: Sequence[WatchedCamera] = ()
        self._onvif: Sequence[OnvifCamera] = ()
        self._failed_once = False
        registry.register(self)

    def bind(self, cameras: Sequence[WatchedCamera],
             onvif: Sequence[OnvifCamera] = ()) -> None:
        self._cameras = tuple(cameras)
        self._onvif = tuple(onvif)

    def describe(self) -> list[Metric]:
        return []  # families are known only at collect time; no duplicate check needed

    def collect(self) -> Iterator[Metric]:
        labels = ["camera", "zone"]
        up = GaugeMetricFamily("gateway_camera_up",
                               "1 while the camera's stream plays (up or degraded).", labels=labels)
        fps = GaugeMetricFamily("gateway_camera_fps",
                                "Frames per second, from the stream's RTP timestamps.",
                                labels=labels)
        bitrate = GaugeMetricFamily("gateway_camera_bitrate_bps",
                                    "Video bits per second over the last 5 s.", labels=labels)
        gop = GaugeMetricFamily("gateway_camera_keyframe_interval_seconds",
                                "Time between the last two keyframes.", labels=labels)
        lost = CounterMetricFamily("gateway_camera_rtp_lost",
                                   "RTP packets missing from the current session's sequence.",
                                   labels=labels)
        picture = GaugeMetricFamily("gateway_camera_picture",
                                    "1 for the camera's picture state, 0 for the others.",
                                    labels=[*labels, "state"])
        like = GaugeMetricFamily("gateway_camera_picture_likeness",
                                 "The last keyframe's edge map against the camera's"
                                 " reference view (1 the same, under 0.5 moved).",
                                 labels=labels)
        for cam in self._cameras:
            key = [cam.camera, cam.zone]
            try:
                state = str(cam.state())
                figures = cam.figures()
                judged = cam.picture() if cam.picture is not None else None
            except Exception:  # one camera's failure costs its samples, not the page
                if not self._failed_once:
                    self._failed_once = True
                    log.exception("camera gauges failed camera=%s", cam.camera)
                continue
            up.add_metric(key, 1.0 if state in ("up", "degraded") else 0.0)
            if judged is not None:
                for name in PICTURE_STATES:
                    picture.add_metric([*key, name], 1.0 if name == judged[0] else 0.0)
                if judged[1] is not None:
                    like.add_metric(key, judged[1])
            if figures is None:
                continue
            fps.add_metric(key, figures.fps or 0.0)
            bitrate.add_metric(key, figures.bitrate_bps)
            lost.add_metric(key, float(figures.lost))
            if figures.keyframe_interval_s is not None:
                gop.add_metric(key, figures.keyframe_interval_s)
        yield from (up, fps, bitrate, gop, lost, picture, like)
        if self._onvif:
            yield from self._collect_onvif()

    def _collect_onvif(self) -> Iterator[Metric]:
        labels = ["camera", "zone"]
        up = GaugeMetricFamily("gateway_camera_onvif_up",
                               "1 while the camera's ONVIF session holds its event "
                               "subscription.", labels=labels)
        drift = GaugeMetricFamily("gateway_camera_clock_drift_seconds",
                                  "The camera's clock minus the gateway's (ONVIF).",
                                  labels=labels)
        info = GaugeMetricFamily("gateway_camera_info", "The camera's make, model and "
                                 "firmware (ONVIF device information).",
                                 labels=[*labels, "manufacturer", "model", "firmware"])
        for cam in self._onvif:
            key = [cam.camera, cam.zone]
            try:
                state = str(cam.state())
                off = cam.drift()
                about = cam.info()
            except Exception:
                if not self._failed_once:
                    self._failed_once = True
                    log.exception("camera gauges failed camera=%s", cam.camera)
                continue
            up.add_metric(key, 1.0 if state in ("up", "degraded") else 0.0)
            if off is not None:
                drift.add_metric(key, off)
            if about is not None:
                info.add_metric([*key, *(v[:64] for v in about)], 1.0)
        yield from (up, drift, info)
