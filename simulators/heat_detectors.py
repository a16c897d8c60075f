"""The compound's 48 heat detectors, simulated: JSON reports over MQTT, fires and faults on demand.

They speak through the gateway's own MQTT stack (paho on the event loop): the simulator
exercises the same client code as the daemon, against a real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import math
import random
import re
import time
from collections import deque
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError, DeviceError, Unreachable
from gateway.mqtt_loop import LinkOptions, MqttLink

_log = logging.getLogger(__name__)

TOPIC_PREFIX = "furong/fire/heat/"
CONTROL_TOPIC = "furong/sim/control"
FAULT_CODES = ("sensor_open", "sensor_short", "dirty", "tamper", "comm")
FIRE_MODES = ("static", "fast")
MALFORMED_KINDS = (
    "bad_json",
    "wrong_types",
    "huge_values",
    "unknown_device",
    "not_object",
    "oversize",
    "missing_fields",
)
UNKNOWN_DEVICE = "hd-nowhere-99"
OVERSIZE_BYTES = 300_000

# EN 54-5 static response points the site uses (the gateway's FireRulesConfig defaults).
STATIC_THRESHOLD_C = {"A1": 56.0, "A2": 60.0, "B": 75.0, "C": 90.0}
# Class R: the common A1R algorithm drops the threshold to 46 °C while the smoothed rise
# over about a minute exceeds 4 K/min.
ROR_RISE_K_PER_MIN = 4.0
ROR_THRESHOLD_C = 46.0
ROR_WINDOW_S = 60.0
_CLASS_RE = re.compile(r"^(A1|A2|B|C)([RS]?)$")

STATIC_FIRE_K_PER_S = 0.5
FAST_FIRE_K_PER_S = 10.0 / 60.0
COOLING_TAU_S = 40.0  # an extinguished ceiling void loses most of its heat in a couple of minutes
FIRE_REPORT_S = 1.0
NOISE_K = 0.3
AMBIENT_C = (20.0, 26.0)
WARM_AMBIENT_C = (26.0, 32.0)  # canteens and kitchens
AMBIENT_WALK_K_PER_SQRT_S = 0.01  # ~0.6 K in an hour: rooms warm and cool slowly
BATTERY_DRAIN_PCT_PER_S = 1.0 / (30 * 86_400)  # ~1 % a month
LOW_BATTERY_PCT = 8.0
_STEP_S = 1.0  # physics step; rate of rise needs samples at least this dense


def detector_class_parts(detector_class: str) -> tuple[str, bool]:
    """("A1", True) for "A1R": the static class and whether it also responds to rate of rise."""
    match = _CLASS_RE.match(detector_class)
    if match is None:
        raise ValueError(f"unknown heat detector class {detector_class!r}")
    return match.group(1), match.group(2) == "R"


def would_alarm(detector_class: str, temp_c: float, rise_k_per_min: float) -> bool:
    """Whether a detector of this class trips at this temperature and rise."""
    static_class, rate_of_rise = detector_class_parts(detector_class)
    if temp_c >= STATIC_THRESHOLD_C[static_class]:
        return True
    return rate_of_rise and rise_k_per_min > ROR_RISE_K_PER_MIN and temp_c >= ROR_THRESHOLD_C


def fire_plateau_c(detector_class: str) -> float:
    """Where a fire levels off at the detector: ~70 °C, but always past its static point."""
    return max(70.0, STATIC_THRESHOLD_C[detector_class_parts(detector_class)[0]] + 10.0)


class FireState(enum.Enum):
    QUIET = "quiet"
    STATIC = "static"  # climbs ~0.5 K/s to a plateau
    FAST = "fast"  # rate-of-rise fire, ~10 K/min
    COOLING = "cooling"  # extinguished, relaxing to ambient


class DetectorSim:
    """One heat detector: its physics, its alarm logic, its own seq and clock."""

    def __init__(
        self,
        device_id: str,
        *,
        topic: str | None = None,
        heartbeat_s: float = 30.0,
        detector_class: str = "A1R",
        zone: str = "",
        seed: int = 0,
    ) -> None:
        detector_class_parts(detector_class)
        self.device_id = device_id
        self.topic = topic or TOPIC_PREFIX + device_id
        self.heartbeat_s = heartbeat_s
        self.detector_class = detector_class
        self.zone = zone
        self._rng = random.Random(f"{seed}:{device_id}")
        warm = any(word in f"{zone} {device_id}" for word in ("canteen", "kitchen"))
        self._band = WARM_AMBIENT_C if warm else AMBIENT_C
        self.ambient_c = self._rng.uniform(*self._band)
        self.temp_c = self.ambient_c
        self.battery_pct = self._rng.uniform(85.0, 100.0)
        self.alarm = False
        self.fault: str | None = None
        self.silenced = False
        self.fire = FireState.QUIET
        self.seq = 0
        self.phase = self._rng.random()  # fraction of a heartbeat before the first report
        self._t: float | None = None
        self._history: deque[tuple[float, float]] = deque()
        self._reported: tuple[bool, str | None] = (False, None)

    @property
    def active(self) -> bool:
        """Burning, cooling or in alarm: reports every second instead of every heartbeat."""
        return self.fire is not FireState.QUIET or self.alarm

    def period_s(self) -> float:
        return FIRE_REPORT_S if self.active else self.heartbeat_s

    def ignite(self, mode: str, now: float) -> None:
        if mode not in FIRE_MODES:
            raise ValueError(f"fire mode must be one of {FIRE_MODES}, not {mode!r}")
        self.advance(now)
        self.fire = FireState(mode)

    def extinguish(self, now: float) -> None:
        self.advance(now)
        if self.fire is not FireState.QUIET:
            self.fire = FireState.COOLING

    def rise_k_per_min(self) -> float:
        """Rise over the last window; half a window of history at least, or nothing."""
        if len(self._history) < 2:
            return 0.0
        (t0, temp0), (t1, temp1) = self._history[0], self._history[-1]
        if t1 - t0 < ROR_WINDOW_S / 2:
            return 0.0
        return (temp1 - temp0) / (t1 - t0) * 60.0

    def advance(self, now: float) -> None:
        """Run the physics up to `now` (the detector's clock) in steps of at most a second."""
        if self._t is None:
            self._t = now
            self._history.append((now, self.temp_c))
            return
        while self._t < now:
            dt = min(_STEP_S, now - self._t)
            self._t += dt
            self._step(self._t, dt)

    def _step(self, t: float, dt: float) -> None:
        lo, hi = self._band
        walk = self._rng.gauss(0.0, AMBIENT_WALK_K_PER_SQRT_S) * math.sqrt(dt)
        self.ambient_c = min(hi, max(lo, self.ambient_c + walk))
        if self.fire in (FireState.STATIC, FireState.FAST):
            rate = STATIC_FIRE_K_PER_S if self.fire is FireState.STATIC else FAST_FIRE_K_PER_S
            self.temp_c = min(fire_plateau_c(self.detector_class), self.temp_c + rate * dt)
        else:
            self.temp_c += (self.ambient_c - self.temp_c) * (1.0 - math.exp(-dt / COOLING_TAU_S))
            if self.fire is FireState.COOLING and self.temp_c < self.ambient_c + 1.0:
                self.fire = FireState.QUIET
        self._history.append((t, self.temp_c))
        while self._history and self._history[0][0] < t - ROR_WINDOW_S:
            self._history.popleft()
        self.alarm = would_alarm(self.detector_class, self.temp_c, self.rise_k_per_min())
        self.battery_pct = max(0.0, self.battery_pct - BATTERY_DRAIN_PCT_PER_S * dt)

    def report(self, now: float) -> tuple[bytes, int]:
        """The next routine report and its QoS (1 when it carries an alarm, a fault or a change)."""
        self.advance(now)
        state = (self.alarm, self.fault)
        qos = 1 if self.alarm or self.fault or state != self._reported else 0
        self._reported = state
        return self._encode(now, self.temp_c + self._rng.uniform(-NOISE_K, NOISE_K)), qos

    def burst_report(self, alarm: bool, now: float) -> bytes:
        """A synthetic alarm raise or clear for `burst`; the physics is left as it is."""
        static_class = detector_class_parts(self.detector_class)[0]
        temp = STATIC_THRESHOLD_C[static_class] + 5.0 if alarm else self.ambient_c
        return self._encode(now, temp, alarm=alarm)

    def _encode(self, now: float, temp_c: float, *, alarm: bool | None = None) -> bytes:
        self.seq += 1
        message = {
            "seq": self.seq,
            "ts": round(now, 3),
            "temp_c": round(temp_c, 2),
            "alarm": self.alarm if alarm is None else alarm,
            "fault": self.fault,
            "battery_pct": round(self.battery_pct),
        }
        return json.dumps(message, separators=(",", ":")).encode()


def malformed_message(kind: str, detector: DetectorSim, now: float) -> tuple[str, bytes]:
    """(topic, payload) of one deliberately broken message; the detector's seq is not used up."""
    valid: dict[str, Any] = {
        "seq": detector.seq + 1,
        "ts": round(now, 3),
        "temp_c": round(detector.temp_c, 2),
        "alarm": False,
        "fault": None,
        "battery_pct": round(detector.battery_pct),
    }
    topic = detector.topic
    if kind == "bad_json":
        whole = json.dumps(valid).encode()
        payload = whole[: len(whole) // 2]
    elif kind == "wrong_types":
        payload = json.dumps(valid | {"temp_c": "hot", "alarm": "yes"}).encode()
    elif kind == "huge_values":
        payload = json.dumps(valid | {"temp_c": 1e308, "seq": -5, "battery_pct": 10**12}).encode()
    elif kind == "unknown_device":
        topic = TOPIC_PREFIX + UNKNOWN_DEVICE
        payload = json.dumps(valid | {"seq": 1}).encode()
    elif kind == "not_object":
        payload = json.dumps([valid]).encode()
    elif kind == "oversize":
        # A well-formed report that is too big: only its size is wrong.
        short = len(json.dumps(valid | {"padding": ""}).encode())
        payload = json.dumps(valid | {"padding": "x" * (OVERSIZE_BYTES - short)}).encode()
    elif kind == "missing_fields":
        payload = json.dumps({"seq": 1}).encode()
    else:
        raise ValueError(f"malformed kind must be one of {MALFORMED_KINDS}, not {kind!r}")
    return topic, payload


def generated_fleet(seed: int = 0, heartbeat_s: float = 30.0) -> list[DetectorSim]:
    """The compound's 48 detectors when no site file is given: 36 main, 12 health building."""
    ids = [f"hd-main-{n:02d}" for n in range(1, 37)] + [f"hd-health-{n:02d}" for n in range(1, 13)]
    return [DetectorSim(i, heartbeat_s=heartbeat_s, seed=seed) for i in ids]


def load_fleet(site_file: str | Path, seed: int = 0) -> list[DetectorSim]:
    """The enabled heat detectors of a site file (`devices[*]` with kind heat_detector)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = Path(site_file)
    try:
        site = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the site file: {exc}") from exc
    devices = site.get("devices") if isinstance(site, dict) else None
    if not isinstance(devices, list):
        raise ConfigError(f"{path}: no `devices` list")
    fleet = []
    for n, device in enumerate(devices):
        if not isinstance(device, dict) or device.get("kind") != "heat_detector":
            continue
        if device.get("enabled", True) is False:
            continue
        try:
            fleet.append(
                DetectorSim(
                    str(device["id"]),
                    topic=device.get("topic"),
                    heartbeat_s=float(device.get("heartbeat_s", 30.0)),
                    detector_class=str(device.get("detector_class", "A1R")),
                    zone=str(device.get("zone", "")),
                    seed=seed,
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: devices[{n}]: {exc}") from exc
    if not fleet:
        raise ConfigError(f"{path}: no enabled heat_detector devices")
    return fleet


class HeatDetectorFleet:
    """The whole fleet on one MQTT connection, driven by methods or by `furong/sim/control`.

    Time inside the fleet runs `time_scale` times faster than the wall clock, so a test
    can watch a ten-minute fire in seconds; every `ts` is on that scaled clock.
    """

    def __init__(
        self,
        host: str,
        port: int,
        detectors: list[DetectorSim] | None = None,
        *,
        site_file: str | Path | None = None,
        interval_s: float | None = None,
        seed: int = 0,
        time_scale: float = 1.0,
        client_id: str | None = None,
    ) -> None:
        if detectors is None:
            detectors = load_fleet(site_file, seed) if site_file else generated_fleet(seed)
        if interval_s is not None:
            for detector in detectors:
                detector.heartbeat_s = interval_s
        self.host = host
        self.port = port
        self.time_scale = time_scale
        self.client_id = client_id or f"sim-heat-{seed}-{random.getrandbits(24):06x}"
        self.detectors = {d.device_id: d for d in detectors}
        self.published = 0
        self._t0_wall = time.time()
        self._t0_mono = time.monotonic()
        now = self.now()
        self._due = {d.device_id: now + d.phase * d.heartbeat_s for d in detectors}
        for detector in detectors:
            detector.advance(now)
        self._client: MqttLink | None = None
        self._connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()

    def now(self) -> float:
        """The detectors' clock: epoch seconds, running `time_scale` times faster."""
        return self._t0_wall + (time.monotonic() - self._t0_mono) * self.time_scale

    async def run(self) -> None:
        """Publish until cancelled; reconnect with full-jitter backoff when the broker goes."""
        backoff = 0.1
        down_logged = False  # one log line per outage, not one per attempt
        while True:
            link = MqttLink(LinkOptions(self.host, self.port, self.client_id, keepalive_s=10,
                                        protocol=4, max_inflight=200))
            try:
                await link.connect()
                await link.subscribe([(CONTROL_TOPIC, 1)])
                self._client = link
                self._connected.set()
                down_logged = False
                backoff = 0.1
                _log.info("event=sim_connected broker=%s:%d", self.host, self.port)
                await self._serve(link)
            except DeviceError as exc:
                if not down_logged:
                    _log.info("event=sim_broker_lost reason=%r", str(exc))
                    down_logged = True
            finally:
                self._client = None
                self._connected.clear()
                await link.disconnect(timeout_s=0.5)
            await asyncio.sleep(random.uniform(0, backoff))
            backoff = min(5.0, backoff * 2)

    async def _serve(self, link: MqttLink) -> None:
        """Report and obey control messages until either stops (the link is gone)."""
        loops = [
            asyncio.create_task(self._report_loop(link), name="sim-heat-reports"),
            asyncio.create_task(self._control_loop(link), name="sim-heat-control"),
        ]
        try:
            done, _pending = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        for loop in done:
            loop.result()
        raise Unreachable("the simulator's loops stopped")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float = 5) -> None:  # noqa: ASYNC109 (fixtures' API)
        async with asyncio.timeout(timeout):
            await self._connected.wait()

    def fire(self, device_id: str, mode: str = "static") -> None:
        self._detector(device_id).ignite(mode, self.now())
        self._inject("fire", device_id, mode=mode)

    def extinguish(self, device_id: str) -> None:
        self._detector(device_id).extinguish(self.now())
        self._inject("extinguish", device_id)

    def fault(self, device_id: str, code: str) -> None:
        if code not in FAULT_CODES:
            raise ValueError(f"fault code must be one of {FAULT_CODES}, not {code!r}")
        self._detector(device_id).fault = code
        self._inject("fault", device_id, code=code)

    def clear_fault(self, device_id: str) -> None:
        self._detector(device_id).fault = None
        self._inject("clear_fault", device_id)

    def low_battery(self, device_id: str) -> None:
        self._detector(device_id).battery_pct = LOW_BATTERY_PCT
        self._inject("low_battery", device_id)

    def silence(self, device_id: str) -> None:
        self._detector(device_id).silenced = True
        self._inject("silence", device_id)

    def resume(self, device_id: str) -> None:
        self._detector(device_id).silenced = False
        self._inject("resume", device_id)

    async def send_malformed(self, kind: str, device_id: str | None = None) -> None:
        detector = self._detector(device_id) if device_id else next(iter(self.detectors.values()))
        topic, payload = malformed_message(kind, detector, self.now())
        _log.info("injection=malformed kind=%s topic=%s bytes=%d", kind, topic, len(payload))
        client = await self._connected_client()
        await client.publish(topic, payload, qos=1)
        self.published += 1

    async def burst(self, n: int, devices: list[str]) -> int:
        """Publish `n` alarm raises and clears (QoS 1) round-robin over `devices`, at once."""
        detectors = [self._detector(d) for d in devices]
        if not detectors or n <= 0:
            return 0
        _log.info("injection=burst n=%d devices=%s", n, ",".join(devices))
        client = await self._connected_client()
        raised = {d.device_id: False for d in detectors}
        # Held so no routine report slips between seqs this burst has already numbered.
        async with self._send_lock:
            window = 200
            for start in range(0, n, window):
                messages = []
                for k in range(start, min(n, start + window)):
                    detector = detectors[k % len(detectors)]
                    raised[detector.device_id] = not raised[detector.device_id]
                    payload = detector.burst_report(raised[detector.device_id], self.now())
                    messages.append(client.publish(detector.topic, payload, qos=1))
                await asyncio.gather(*messages)
                self.published += len(messages)
        return n

    def _detector(self, device_id: str) -> DetectorSim:
        try:
            return self.detectors[device_id]
        except KeyError:
            raise ValueError(f"no heat detector {device_id!r} in the fleet") from None

    def _inject(self, action: str, device_id: str, **details: str) -> None:
        extra = "".join(f" {key}={value}" for key, value in details.items())
        _log.info("injection=%s device=%s%s", action, device_id, extra)
        # Real detectors report a change of state at once, not at their next heartbeat.
        self._due[device_id] = self.now()
        self._wake.set()

    async def _connected_client(self) -> MqttLink:
        await self.wait_connected()
        if self._client is None:
            raise Unreachable("the fleet is not connected")
        return self._client

    async def _report_loop(self, client: MqttLink) -> None:
        while True:
            self._wake.clear()
            now = self.now()
            for device_id, due in list(self._due.items()):
                if due > now:
                    continue
                detector = self.detectors[device_id]
                if not detector.silenced:
                    async with self._send_lock:
                        payload, qos = detector.report(self.now())
                        await client.publish(detector.topic, payload, qos=qos)
                    self.published += 1
                # An injection while we were publishing has already set the next report.
                if self._due[device_id] == due:
                    self._due[device_id] = self.now() + detector.period_s()
            delay = (min(self._due.values()) - self.now()) / self.time_scale
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _control_loop(self, client: MqttLink) -> None:
        while True:
            for message in await client.next_batch():
                if message.topic != CONTROL_TOPIC:
                    continue
                try:
                    command = json.loads(message.payload)
                    if not isinstance(command, dict):
                        raise TypeError("a control message is a JSON object")
                    await self.control(command)
                except (ValueError, TypeError, KeyError) as exc:
                    _log.warning("event=sim_control_rejected reason=%r", str(exc))

    async def control(self, command: dict[str, Any]) -> None:
        """Apply one control command, e.g. {"action": "fire", "device": "hd-main-03"}."""
        action = command.get("action")
        device = str(command.get("device", ""))
        by_device = {
            "extinguish": self.extinguish,
            "clear_fault": self.clear_fault,
            "low_battery": self.low_battery,
            "silence": self.silence,
            "resume": self.resume,
        }
        if action == "fire":
            self.fire(device, str(command.get("mode", "static")))
        elif action == "fault":
            self.fault(device, str(command["code"]))
        elif isinstance(action, str) and action in by_device:
            by_device[action](device)
        elif action == "malformed":
            await self.send_malformed(str(command["kind"]), command.get("device"))
        elif action == "burst":
            await self.burst(int(command["n"]), [str(d) for d in command["devices"]])
        else:
            _log.warning("event=sim_control_unknown action=%r", action)
