"""Presence: silence means stale, for any device family. A device with an expected
interval (a heartbeat, a poll) goes stale after `silence_factor` x its interval without
a word, and back up when it is heard again (`device.stale`, with the device state)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from gateway.alerts import Alert, AlertSignal, AlertState
from gateway.errors import ConfigError
from gateway.events import Event, Heartbeat, Reading, Severity

STALE = "device.stale"

# Returned whenever nothing changed, so the hot path allocates no list. Never mutate it.
_NOTHING: list[AlertSignal] = []


@dataclass(frozen=True, slots=True)
class PresenceSpec:
    id: str
    zone: str
    interval_s: float  # how often the device is expected to be heard
    label: str = "Device"  # what the summaries call it: "Heat detector", "Energy meter"
    interval_name: str = "heartbeat"  # "heartbeat", "poll"


class _Presence:
    __slots__ = ("heard", "silence_s", "spec", "stale")

    def __init__(self, spec: PresenceSpec, factor: float) -> None:
        self.spec = spec
        self.silence_s = factor * spec.interval_s
        self.heard: float | None = None
        self.stale = False


class PresenceRules:
    """Silence detection for a set of devices; signals only on a transition."""

    name = "presence"

    def __init__(self, devices: Iterable[PresenceSpec], *, silence_factor: float = 3.0) -> None:
        if silence_factor < 1.0:
            raise ConfigError(f"presence: silence factor {silence_factor:g} is below 1")
        self._devices: dict[str, _Presence] = {}
        for spec in devices:
            if spec.id in self._devices:
                raise ConfigError(f"device {spec.id}: listed twice")
            if spec.interval_s <= 0:
                raise ConfigError(f"device {spec.id}: interval must be positive")
            self._devices[spec.id] = _Presence(spec, silence_factor)
        self._first_tick: float | None = None

    def restore(self, firing: Iterable[Alert]) -> None:
        for alert in firing:
            p = self._devices.get(alert.source)
            if p is not None and alert.rule == STALE and alert.state is AlertState.FIRING:
                p.stale = True

    def sources(self) -> Collection[str]:
        """Only its own devices' items can make it speak."""
        return self._devices.keys()

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> list[AlertSignal]:
        p = self._devices.get(item.source)
        if p is None:
            return _NOTHING
        out = _NOTHING
        if p.stale:
            p.stale = False
            out = [self._signal(p, now, active=False)]
        p.heard = now
        return out

    def tick(self, now: float) -> list[AlertSignal]:
        if self._first_tick is None:
            self._first_tick = now
        out = _NOTHING
        for p in self._devices.values():
            if p.stale:
                continue
            # Never heard since start-up: the grace period runs from the first tick.
            since = self._first_tick if p.heard is None else p.heard
            if now - since >= p.silence_s:
                p.stale = True
                signal = self._signal(p, now, active=True)
                out = [signal] if out is _NOTHING else [*out, signal]
        return out

    def _signal(self, p: _Presence, now: float, *, active: bool) -> AlertSignal:
        spec = p.spec
        if p.heard is not None:
            silent = now - p.heard
        else:
            silent = now - (now if self._first_tick is None else self._first_tick)
        every = f"{spec.interval_name} every {spec.interval_s:g} s"
        if not active and p.heard is None:
            summary = f"{spec.label} {spec.id} heard again, {silent:.0f} s after start-up"
        elif not active:
            summary = f"{spec.label} {spec.id} heard again after {silent:.0f} s of silence"
        elif p.heard is None:
            summary = f"{spec.label} {spec.id} not heard in {silent:.0f} s since start-up ({every})"
        else:
            summary = f"{spec.label} {spec.id} silent for {silent:.0f} s ({every})"
        data = {"silent_s": round(silent, 1), f"{spec.interval_name}_s": spec.interval_s}
        return AlertSignal(
            STALE, spec.id, spec.zone, Severity.MAJOR, active, summary, data,
            device_state="stale" if active else "up",
        )
