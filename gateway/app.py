"""The daemon: builds every part from the site file, runs them in one TaskGroup, and stops
within seconds on SIGTERM with the store flushed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from drivers.mqtt.codec import DeviceCodec
from drivers.mqtt.config import BrokerEndpoint
from drivers.mqtt.driver import MqttDeviceDriver
from drivers.mqtt.gate_codec import EVENT_TOPIC, GateControllerCodec
from drivers.mqtt.heat_detector import HeatDetectorCodec, load_profile
from drivers.mqtt.reports import DeviceBinding
from gateway import __version__
from gateway.alerts import AlertBook
from gateway.api.app import make_app, serve
from gateway.api.bounds import HttpLimits
from gateway.api.cameras import DeskCamera, add_camera_routes
from gateway.api.gates import add_gate_routes
from gateway.api.lifts import LiftDesk, add_lift_routes
from gateway.api.savings import add_savings_routes
from gateway.api.snapshots import add_snapshot_routes
from gateway.bus import Bus
from gateway.camera_metrics import CameraGauges, OnvifCamera, WatchedCamera
from gateway.clock import Clock, SystemClock
from gateway.commands import Command, Commander, CommandGuard, CommandResult, policy_of
from gateway.config import (
    BrokerConfig,
    CameraDevice,
    MqttDevice,
    MqttGateDevice,
    MqttTarget,
    Site,
    TlsConfig,
    WebhookTarget,
    is_loopback,
)
from gateway.contract import Driver
from gateway.datalock import DataFolderLock
from gateway.errors import StoreFailed
from gateway.events import Lane
from gateway.forward.messages import Route
from gateway.forward.mqtt import MqttForwarder, is_alarm_row
from gateway.forward.webhook import WebhookForwarder
from gateway.ingest import Ingest
from gateway.lift_availability import AvailabilityLog
from gateway.lift_metrics import LiftCollector
from gateway.lifts import LiftModules, build_modules, lift_presence, report
from gateway.metering import Metering
from gateway.meters import (
    SavingsDesk,
    counter_states,
    meter_specs,
    modbus_presence,
    stored_totals,
    water_rules,
)
from gateway.metrics import Metrics
from gateway.mqtt_loop import Tls
from gateway.pipeline import Pipeline, record_to_alert
from gateway.rules import RuleRegistry
from gateway.rules.cameras import CameraRules, CameraSpec
from gateway.rules.fire import DetectorSpec, FireParams, FireRules, detector_flags
from gateway.rules.presence import PresenceRules, PresenceSpec
from gateway.sdnotify import notify
from gateway.secrets import resolve_secret
from gateway.snapshots import KeyframeSource, Snapshots, SnapshotSource, ZoneCamera
from gateway.store import AuditRow, OutboxRow, Retention, Store, WriteBatch
from gateway.supervisor import Backoff, LinkState, Supervisor
from gateway.tasks import log_failure
from gateway.vehicles.wiring import Gates

if TYPE_CHECKING:
    from drivers.onvif.driver import OnvifMonitor
    from drivers.onvif.driver import Timing as OnvifTiming

# ONVIF sessions starting at once (each parses ~10 SOAP answers): the rest wait their turn.
ONVIF_STARTS_AT_ONCE = 8

log = logging.getLogger("gateway.app")

# When start-up's objects are frozen out of the collector (`freeze_heap`): the core, its
# drivers and their profiles are built by then.
HEAP_FREEZE_AFTER_S = 3.0

# How long a thread may hold the interpreter while another waits for it (Python's
# default: 5 ms). The store's writer thread gives the interpreter up around every SQLite
# step of a commit (BEGIN, each row, COMMIT) and waits up to this long to get it back from
# the busy event loop's thread, with the alarm waiting too. Measured: 1 ms and 0.05 ms
# against 0.2 ms in docs/benchmarks.md.
GIL_SWITCH_S = 0.0002

RETENTION_EVERY_S = 3600.0
# A broker that comes back is used within seconds: queued alarms reach it within 5 s of
# its return, however long the outage (a link that keeps failing still backs off to this).
BROKER_BACKOFF_CAP_S = 3.0
# The codec name of gate controllers on a broker (heat detectors name their profile).
GATE_CODEC = "gate_controller"
# After a failed commit the store is probed this often (growing to the cap) until a
# write succeeds again: a full disk is freed by a person, not in milliseconds.
STORE_PROBE_FIRST_S = 0.5
STORE_PROBE_CAP_S = 10.0
# The pipeline must have moved within this long for /healthz and the watchdog to say ok.
PROGRESS_DEADLINE_S = 10.0


@dataclass(frozen=True)
class Overrides:
    """Run-time overrides of the site file (the demo points every broker at its own)."""

    broker: tuple[str, int] | None = None
    data_dir: Path | None = None
    http_port: int | None = None
    http_host: str | None = None
    push_port: int | None = None  # the gate cameras' push listener
    # Modbus links of the site file served elsewhere (the demo's simulated meters):
    # link (e.g. "rtu:///dev/ttyUSB0") -> (host, port) of a TCP stand-in.
    modbus: Mapping[str, tuple[str, int]] | None = None
    # The ONVIF monitors' timing (drivers.onvif.driver.Timing): tests and benchmarks shorten
    # the subscription's life and the clock checks.
    onvif_timing: OnvifTiming | None = None


class Gateway:
    def __init__(
        self,
        site: Site,
        site_path: Path,
        *,
        overrides: Overrides | None = None,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.site = site
        self.site_path = site_path
        self.overrides = overrides or Overrides()
        self.clock = clock or SystemClock()
        self.environ = environ
        self.metrics = Metrics()
        # The meters' energy, water and gas figures, kept across core rebuilds.
        self.metering = Metering(meter_specs(site, site_path.parent / "profiles"))
        self.metrics.registry.register(self.metering)
        self.bus = Bus()
        self.ingest = Ingest(self.bus, self.metrics)
        self.camera_gauges = CameraGauges(self.metrics.registry)
        self.desk_cameras: dict[str, DeskCamera] = {}  # the running core's, for the desk
        data_dir = self.overrides.data_dir or Path(site.gateway.data_dir)
        self.db_path = data_dir / "gateway.db"
        self.snapshots = Snapshots(data_dir / "snapshots", site.retention.snapshots_days)
        r = site.retention
        self.store = Store(
            self.db_path,
            retention=Retention(r.events_days, r.readings_days, r.alerts_days, r.max_db_mb,
                                r.outbox_max_rows,
                                gate_events_days=site.gates.events_days),
            clock=self.clock,
        )
        test_zones = [z.id for b in site.buildings for z in b.zones if z.test_mode]
        self.book = AlertBook(test_zones=test_zones)
        # Drivers whose devices take commands attach to it as they are built.
        self.commander = Commander(self._command_guard(), self.store, self.clock)
        self._linkage: set[asyncio.Task[CommandResult]] = set()
        self.supervisors: list[Supervisor] = []
        self.onvif_monitors: dict[str, OnvifMonitor] = {}  # camera -> its ONVIF monitor
        self.forwarders: list[MqttForwarder | WebhookForwarder] = []
        self.http_port: int | None = None
        self.pipeline: Pipeline | None = None  # built in run(), from what the store holds
        self.ready = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._core_failed = asyncio.Event()
        self.core_generation = 0
        self.store_recovering = False
        self._device_seqs: dict[str, int] = {}
        # The fire model, elevator rules and maintenance calendar of the running core.
        self.lifts: LiftModules | None = None
        self.metrics.registry.register(LiftCollector(lambda: self.lifts))
        self.gates = self._gates(data_dir)

    # ---- building the parts -------------------------------------------------------------
    def _endpoint(self, name: str, broker: BrokerConfig, role: str) -> BrokerEndpoint:
        host, port = self.overrides.broker or (broker.host, broker.port)
        password = (
            resolve_secret(broker.password, self.environ) if broker.password is not None else None
        )
        client_id = f"{broker.client_id or self.site.site.id + '-gw'}-{role}"
        return BrokerEndpoint(host, port, broker.username, password, broker.keepalive_s,
                              client_id, tls=_tls(broker.tls))

    def _rules(self) -> RuleRegistry:
        """Every rule module, presence first: a device heard again is news before what
        its report says."""
        self.lifts = build_modules(self.site, self.db_path)
        modules: list[Any] = [self._presence_rules(), self._fire_rules(), *self.lifts.modules,
                              water_rules(self.site, self.store, self.clock.now()),
                              self._camera_rules()]
        if self.gates is not None:
            modules.append(self.gates.rules(self.db_path))
        return RuleRegistry(modules)

    def _gate_drivers(self, gates: Gates) -> None:
        """The plate push listener, taking the gates' commands. (Gate controllers on a
        broker ride that broker's MQTT driver: `_build_drivers`.)"""
        if gates.devices:
            listener = gates.build_listener(self.ingest)
            for gate in listener.gates:
                self.commander.attach(gate, listener)
            self.supervisors.append(self._supervise(listener, BROKER_BACKOFF_CAP_S))

    def _gates(self, data_dir: Path) -> Gates | None:
        """The barrier gates' parts, when the site has enabled plate cameras."""
        devices = self.site.devices_of("http_push")
        controllers = [d for d in self.site.devices
                       if isinstance(d, MqttGateDevice) and d.enabled]
        if not devices and not controllers:
            return None
        gates = Gates(devices, self.site.gates, data_dir, timezone=self.site.site.timezone,
                      clock=self.clock, environ=self.environ,
                      port=self.overrides.push_port, controllers=controllers)
        gates.register_metrics(self.metrics.registry)
        return gates

    def _camera_rules(self) -> CameraRules:
        cfg = self.site.rules.cameras
        return CameraRules((CameraSpec(d.id, d.zone) for d in self.site.devices_of("rtsp")),
                           down_for_s=cfg.down_for_s, degraded_for_s=cfg.degraded_for_s,
                           clock_drift_max_s=cfg.clock_drift_max_s)

    def _fire_rules(self) -> FireRules:
        cfg = self.site.rules.fire
        # FireParams carries the same names as the config section, plus defaults of its
        # own; the silence factor belongs to presence.
        params = FireParams(**cfg.model_dump(exclude={"silence_factor"}))
        specs = [
            DetectorSpec(d.id, d.zone, d.detector_class, d.heartbeat_s)
            for d in self._heat_detectors()
        ]
        return FireRules(params, specs)

    def _presence_rules(self) -> PresenceRules:
        # Only devices whose driver runs here: a family without one would only go stale.
        specs = [
            PresenceSpec(d.id, d.zone, d.heartbeat_s, "Heat detector", "heartbeat")
            for d in self._heat_detectors()
        ] + lift_presence(self.site)
        # Lift boxes and the panel gateway have theirs above; every other Modbus unit too.
        watched = {s.id for s in specs}
        specs += [s for s in modbus_presence(self.site) if s.id not in watched]
        if self.gates is not None:
            specs += self.gates.presence_specs()
        return PresenceRules(specs, silence_factor=self.site.rules.fire.silence_factor)

    def _command_guard(self) -> CommandGuard:
        # Every device model with a `commands:` (gates, Modbus relay outputs) takes part.
        allowed = [(d.id, cmds) for d in self.site.devices
                   if d.enabled and (cmds := getattr(d, "commands", None)) is not None]
        return CommandGuard(policy_of(device, cmds) for device, cmds in allowed)

    def _linkage_command(self, command: Command) -> None:
        """A rule's command, once its cause is committed: guarded and audited like any."""
        task = asyncio.get_running_loop().create_task(
            self.commander.execute(command), name=f"command:{command.device}:{command.action}"
        )
        self._linkage.add(task)
        task.add_done_callback(self._linkage.discard)
        task.add_done_callback(log_failure)

    def _heat_detectors(self) -> list[MqttDevice]:
        return [
            d for d in self.site.devices
            if isinstance(d, MqttDevice) and d.enabled and d.kind == "heat_detector"
        ]

    def _on_link(self, name: str, state: LinkState, reason: str) -> None:
        self.metrics.device_transition(name, state.value)

    def _codecs(self, devices: list[MqttDevice | MqttGateDevice]) -> dict[str, DeviceCodec]:
        """One codec per profile in use on a broker (a binding names its codec)."""
        profiles_dir = self.site_path.parent / "profiles"
        codecs: dict[str, DeviceCodec] = {}
        for device in devices:
            if isinstance(device, MqttGateDevice):
                codecs.setdefault(GATE_CODEC, GateControllerCodec())
            elif device.profile not in codecs:
                codecs[device.profile] = HeatDetectorCodec(
                    load_profile(profiles_dir / f"{device.profile}.yaml"))
        return codecs

    def _mqtt_devices(self) -> list[MqttDevice | MqttGateDevice]:
        """Every enabled device on a broker: heat detectors and gate controllers."""
        return [*self._heat_detectors(), *(self.gates.controllers if self.gates else [])]

    def _build_drivers(self) -> None:
        self.supervisors = []
        self.forwarders = []
        by_broker: dict[str, list[MqttDevice | MqttGateDevice]] = {}
        for device in self._mqtt_devices():
            by_broker.setdefault(device.broker, []).append(device)
        for broker_name, devices in sorted(by_broker.items()):
            # One connection per broker, whatever families are behind it.
            driver = MqttDeviceDriver(
                f"mqtt:{broker_name}",
                self._endpoint(broker_name, self.site.brokers[broker_name], "ingest"),
                [self._binding(d) for d in devices],
                self._codecs(devices),
                self.ingest,
                clock=self.clock,
            )
            for device_id in driver.gates:
                self.commander.attach(device_id, driver)
            self.supervisors.append(self._supervise(driver, BROKER_BACKOFF_CAP_S))
        self.supervisors += self._modbus_supervisors()
        if self.gates is not None:
            self._gate_drivers(self.gates)
        self.supervisors += self._camera_supervisors()
        for target in self.site.forwarding:
            self.metrics.forward_target(target.id)
            if isinstance(target, WebhookTarget):
                hook = WebhookForwarder(
                    target.id, url=target.url, store=self.store,
                    token=resolve_secret(target.token, self.environ) if target.token else None,
                    timeout_s=target.timeout_s, clock=self.clock, on_delivered=self._delivered,
                    tls=_tls(target.tls),
                    on_failed=functools.partial(self.metrics.forward_failed, target.id),
                    on_dead=lambda row: self.metrics.dead_lettered(row.target),
                )
                self.forwarders.append(hook)
                self.supervisors.append(self._supervise(hook))
                continue
            ep = self._endpoint(target.broker, self.site.brokers[target.broker], target.id)
            fwd = MqttForwarder(
                target.id,
                host=ep.host,
                port=ep.port,
                store=self.store,
                username=ep.username,
                password=ep.password,
                keepalive_s=ep.keepalive_s,
                publish_timeout_s=self.site.brokers[target.broker].publish_timeout_s,
                client_id=ep.client_id,
                tls=ep.tls,
                clock=self.clock,
                on_delivered=self._delivered,
                on_failed=functools.partial(self.metrics.forward_failed, target.id),
            )
            self.forwarders.append(fwd)
            self.supervisors.append(self._supervise(fwd, BROKER_BACKOFF_CAP_S))

    def _supervise(self, driver: Driver, cap_s: float | None = None) -> Supervisor:
        backoff = Backoff(cap_s=cap_s) if cap_s is not None else None
        return Supervisor(driver, backoff=backoff, clock=self.clock,
                          on_transition=self._on_link, on_failure=self.metrics.link_failed)

    def _modbus_supervisors(self) -> list[Supervisor]:
        """One driver and supervisor per Modbus endpoint (TCP peer, serial server, RS-485
        line) carrying every enabled unit on it."""
        devices = self.site.devices_of("modbus")
        if not devices:
            return []
        from drivers.modbus.config import redirected
        from drivers.modbus.driver import MeterBinding, ModbusDriver  # pymodbus, only if used
        from drivers.modbus.profile import load_profile

        profiles_dir = self.site_path.parent / "profiles"
        by_link: dict[str, list[MeterBinding]] = {}
        moved = self.overrides.modbus or {}
        for device in devices:
            if device.endpoint.link in moved:
                device = redirected(device, *moved[device.endpoint.link])
            profile = load_profile(profiles_dir / f"{device.profile}.yaml")
            by_link.setdefault(device.endpoint.link, []).append(MeterBinding(device, profile))
        drivers = []
        for link, bindings in sorted(by_link.items()):
            driver = ModbusDriver(f"modbus:{link}", bindings, self.ingest, clock=self.clock)
            drivers.append(driver)
            for b in bindings:
                if b.device.commands is not None:  # a relay output, a set-point
                    self.commander.attach(b.device.id, driver)
        counters = [(b.device.id, [r.metric for r in b.profile.registers if r.kind == "counter"])
                    for bindings in by_link.values() for b in bindings]
        states = counter_states(self.store, counters)
        for driver in drivers:
            driver.restore_counters(states)  # consumption goes on across a restart
        return [self._supervise(driver) for driver in drivers]

    def _camera_supervisors(self) -> list[Supervisor]:
        """One stream monitor per enabled camera; its transitions are `camera.stream.*`
        events, its figures the per-camera gauges."""
        devices = self.site.devices_of("rtsp")
        self.desk_cameras = {}
        if not devices:
            return []
        from drivers.rtsp.driver import CameraDriver  # PyAV's extra, only if cameras are on

        out: list[Supervisor] = []
        watched: list[WatchedCamera] = []
        keyframes: dict[str, Callable[[], tuple[str, bytes] | None]] = {}
        for d in devices:
            password = resolve_secret(d.password, self.environ) if d.password else None
            driver = CameraDriver(d, self.ingest, password=password, clock=self.clock)
            sup = Supervisor(driver, clock=self.clock, on_transition=self._on_link,
                             on_failure=self.metrics.link_failed, sink=self.ingest,
                             family="camera.stream")
            watched.append(WatchedCamera(d.id, d.zone, driver.snapshot,
                                         functools.partial(getattr, sup, "state"),
                                         driver.picture_reading))
            self.desk_cameras[d.id] = DeskCamera(
                d.id, d.zone, functools.partial(getattr, sup, "state"),
                driver.picture_reading, driver.refresh_keyframe, driver.retake_reference)
            keyframes[d.id] = driver.last_keyframe
            out.append(sup)
        onvif, gauges, source = self._onvif_supervisors(devices)
        self.camera_gauges.bind(watched, gauges)
        self.snapshots.bind([ZoneCamera(d.id, d.zone) for d in devices],
                            [*source, KeyframeSource(keyframes)])  # ONVIF's URI first
        return out + onvif

    def _onvif_supervisors(self, devices: list[CameraDevice]
                           ) -> tuple[list[Supervisor], list[OnvifCamera], list[SnapshotSource]]:
        """One ONVIF monitor per enabled camera with an `onvif:` URL, beside its stream's;
        its transitions are `camera.onvif.*` events."""
        with_onvif = [d for d in devices if d.onvif is not None]
        if not with_onvif:
            return [], [], []
        from drivers.onvif.driver import OnvifMonitor  # the camera extra
        from drivers.onvif.snapshot import OnvifSnapshotSource, SnapshotLogin

        self.onvif_monitors = {}
        opening = asyncio.Semaphore(ONVIF_STARTS_AT_ONCE)
        sups: list[Supervisor] = []
        gauges: list[OnvifCamera] = []
        logins: dict[str, SnapshotLogin] = {}
        for d in with_onvif:
            password = resolve_secret(d.password, self.environ) if d.password else None
            monitor = OnvifMonitor(d, self.ingest, password=password, clock=self.clock,
                                   timing=self.overrides.onvif_timing, opening=opening)
            sup = Supervisor(monitor, clock=self.clock, on_transition=self._on_link,
                             on_failure=self.metrics.link_failed, sink=self.ingest,
                             family="camera.onvif")
            sups.append(sup)
            self.onvif_monitors[d.id] = monitor
            gauges.append(OnvifCamera(d.id, d.zone, monitor.drift,
                                      functools.partial(getattr, sup, "state"),
                                      monitor.about))
            logins[d.id] = SnapshotLogin(monitor.snapshot_uri, d.username, password)
        return sups, gauges, [OnvifSnapshotSource(logins)]

    def _binding(self, device: MqttDevice | MqttGateDevice) -> DeviceBinding:
        if isinstance(device, MqttGateDevice):
            # Its reports on `<topic>/event`, its commands on `<topic>/command`.
            return DeviceBinding(device.id, device.zone, f"{device.topic}{EVENT_TOPIC}",
                                 codec=GATE_CODEC, exact=True, driver=device.driver)
        known = detector_flags(a for a in self.book.active() if a.source == device.id)
        return DeviceBinding(device.id, device.zone, device.topic, codec=device.profile,
                             known=known, last_seq=self._device_seqs.get(device.id))

    def _routes(self) -> list[Route]:
        routes = []
        for t in self.site.forwarding:
            if isinstance(t, MqttTarget):
                routes.append(Route(t.id, t.topic_prefix or self.site.gateway.topic_prefix))
            else:
                routes.append(Route(t.id, self.site.gateway.topic_prefix, states=False,
                                    drills=t.send_drills))
        return routes

    def _delivered(self, row: OutboxRow, now: float) -> None:
        self.metrics.forwarded(row.target)
        if is_alarm_row(row):
            self.metrics.alarm_to_forward(max(0.0, now - row.created_at))

    def _wake_forwarders(self) -> None:
        for fwd in self.forwarders:
            fwd.notify()

    # ---- health -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        stalled = (
            self.pipeline is None
            or self.clock.monotonic() - self.pipeline.last_progress > PROGRESS_DEADLINE_S
        )
        links = {s.name: s.state.value for s in self.supervisors}
        store_ok = self.store_healthy()
        status = "ok" if self.ready.is_set() and not stalled and store_ok else "failing"
        return {
            "status": status,
            "version": __version__,
            "pipeline_stalled": stalled,
            "store_ok": store_ok,
            "store_write_failures": self.store.write_failures,
            "links": links,
            "outbox": {t: {"depth": d, "oldest": o} for t, (d, o) in
                       self.store.outbox_stats().items()} if self.ready.is_set() else {},
            "outbox_dead": self.store.outbox_dead_counts() if self.ready.is_set() else {},
            "alerts_active": len(self.book.active()),
        }

    def store_healthy(self) -> bool:
        """The store commits: no failed commit since the last successful one."""
        return self.store.healthy and not self.store_recovering

    # ---- running ------------------------------------------------------------------------
    def request_shutdown(self) -> None:
        self._shutdown.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        lock = DataFolderLock(self.db_path.parent)
        lock.acquire()
        try:
            await self._run_locked(loop)
        finally:
            lock.release()

    async def _run_locked(self, loop: asyncio.AbstractEventLoop) -> None:
        self.store.open(loop)
        self.metering.restore(stored_totals(self.store, self.metering.metrics))
        self.metrics.bind(
            alerts_active=lambda: {s.label: n for s, n in self.book.counts_by_severity().items()},
            outbox=self._outbox_ages,
            lanes=lambda: {
                lane.label: (self.bus.depth(lane), self.bus.dropped[lane]) for lane in Lane
            },
            store=self._store_metrics,
            dead_letters=self._dead_letter_counts,
        )
        self.metrics.outbox_bound(self.store.retention.outbox_max_rows)
        runner: web.AppRunner | None = None
        try:
            runner = await self._start_http()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.request_shutdown)
            self.ready.set()
            notify("READY=1")
            loop.call_later(HEAP_FREEZE_AFTER_S, freeze_heap)
            sys.setswitchinterval(GIL_SWITCH_S)
            log.info("gateway ready site=%s devices=%d http=%s:%s db=%s", self.site.site.id,
                     len(self._heat_detectors()), self._http_host(), self.http_port,
                     self.db_path)
            while not self._shutdown.is_set():
                failure = await self._run_core()
                if failure is None:
                    break
                await self._recover_store(failure)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            if runner is not None:
                await runner.cleanup()
            if self.gates is not None:
                self.gates.close()
            await self.store.close()
            log.info("gateway stopped; store flushed")

    def _lift_availability(self) -> AvailabilityLog | None:
        lifts = self.lifts
        if lifts is None or not lifts.elevator.states():
            return None
        return AvailabilityLog(lifts.elevator.states)

    def _build_core(self) -> Pipeline:
        """Rules, alerts, sequence numbers and drivers, all from what the store holds."""
        self.core_generation += 1
        self.bus = Bus()
        self.ingest = Ingest(self.bus, self.metrics)
        self.book.reset()
        self.book.restore(record_to_alert(r) for r in self.store.active_alerts())
        for source, last in self.store.last_seq().items():
            self.ingest.seq.restore(source, last)
        rules = self._rules()
        rules.restore(self.book.active())
        self._core_failed = asyncio.Event()
        self.pipeline = pipeline = Pipeline(
            bus=self.bus, store=self.store, book=self.book, rules=rules,
            metrics=self.metrics, clock=self.clock, routes=self._routes(),
            on_committed=self._wake_forwarders,
            on_store_failed=lambda exc: self._core_failed.set(),
            on_command=self._linkage_command, decisions=self.ingest.decisions,
            on_reading=self.metering.observe,
            on_raised=self.snapshots.attach,
            availability=self._lift_availability(),
        )
        pipeline.restore_device_states(self.store.device_states())
        self._device_seqs = self.store.last_device_seq()
        self._build_drivers()
        return pipeline

    async def _run_core(self) -> BaseException | None:
        """Run the core until shutdown (returns None) or a failed commit (returns it)."""
        pipeline = self._build_core()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(pipeline.run(), name="pipeline"),
                     tg.create_task(self._housekeeping(pipeline), name="housekeeping")]
            tasks += [tg.create_task(s.run(), name=f"supervise:{s.name}")
                      for s in self.supervisors]
            stop = tg.create_task(self._shutdown.wait(), name="shutdown-wait")
            failed = tg.create_task(self._core_failed.wait(), name="store-failed-wait")
            await asyncio.wait([stop, failed], return_when=asyncio.FIRST_COMPLETED)
            for task in (*tasks, stop, failed):
                task.cancel()
        failure = pipeline.failed
        if failure is None and self._shutdown.is_set():
            log.info("shutdown requested")
            notify("STOPPING=1")
            pipeline.process(self.bus.drain())
            pipeline.flush()
            return None
        # Nothing queued may be handled now: it was read against state the failed commit
        # undid. Unacknowledged, the devices' reports come again to the rebuilt core.
        for marker in self.bus.discard():
            if not marker.future.done():
                marker.future.set_exception(StoreFailed("the core restarts"))
        return failure or StoreFailed("the core stopped")

    async def _recover_store(self, failure: BaseException) -> None:
        """Unhealthy until a probe write commits; then the core is rebuilt from the store."""
        self.store_recovering = True
        self.metrics.core_restarted()
        log.error("store failing; core stopped until the store commits again error=%r",
                  failure)
        delay = STORE_PROBE_FIRST_S
        attempts = 0
        while not self._shutdown.is_set():
            attempts += 1
            await self.store.reset()
            probe = WriteBatch(audit=[AuditRow(
                self.clock.now(), "gateway", "store.recovered", str(self.db_path),
                {"error": repr(failure)[:200], "probes": attempts})])
            try:
                await self.store.submit(probe)
            except StoreFailed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._shutdown.wait()
                delay = min(STORE_PROBE_CAP_S, delay * 2)
                continue
            log.info("store commits again; core rebuilt from the store probes=%d", attempts)
            break
        self.store_recovering = False

    def _store_metrics(self) -> dict[str, float]:
        try:
            free = float(self.store.disk_free_bytes())
        except OSError:
            free = 0.0
        return {
            "writer_queue_depth": float(self.store.writer_queue_depth),
            "commits_total": float(self.store.commits),
            "last_commit_seconds": float(self.store.last_commit_s),
            "write_failures_total": float(self.store.write_failures),
            "oldest_uncommitted_seconds": self.store.oldest_uncommitted_s(),
            "disk_free_bytes": free,
            "healthy": 1.0 if self.store_healthy() else 0.0,
            "wal_frames": float(self.store.wal_frames),
            "checkpoint_failures_total": float(self.store.checkpoint_failures),
        }

    def _outbox_ages(self) -> dict[str, tuple[int, float | None]]:
        now = self.clock.now()
        return {
            target: (depth, None if oldest is None else max(0.0, now - oldest))
            for target, (depth, oldest) in self.store.outbox_stats().items()
        }

    def _dead_letter_counts(self) -> dict[str, int]:
        # Every webhook target is listed, 0 included: an alert can tell none from no data.
        hooks = {t.id: 0 for t in self.site.forwarding if isinstance(t, WebhookTarget)}
        return hooks | self.store.outbox_dead_counts()

    async def _audit(self, row: AuditRow) -> None:
        await self.store.submit(WriteBatch(audit=[row]))

    def _http_host(self) -> str:
        return self.overrides.http_host or self.site.gateway.http.host

    async def _start_http(self) -> web.AppRunner:
        zone_names = {z.id: z.name for b in self.site.buildings for z in b.zones}
        http = self.site.gateway.http
        limits = HttpLimits(http.max_connections, http.max_feed_clients, http.keepalive_s,
                            http.header_timeout_s)
        app = make_app(book=self.book, metrics=self.metrics, health=self.health,
                       zone_names=zone_names, limits=limits,
                       commands=self.commander.execute,
                       dead_letters=lambda limit: [d.to_json() for d in
                                                   self.store.outbox_dead(limit)])
        add_lift_routes(app, LiftDesk(
            lambda: self.lifts, self.book.active,
            lambda firm, month: report(self.site, self.db_path, firm, month, self.clock.now()),
            self.clock.now, zone_names,
            building_names={b.id: b.name for b in self.site.buildings}))
        if self.gates is not None:
            add_gate_routes(app, self.gates, self.commander.execute, lambda: self.ingest,
                            self.clock)
        savings = SavingsDesk(self.site, self.site_path, self.db_path, self.metering.specs,
                              now=self.clock.now)
        add_savings_routes(app, savings.report_async, savings.measures)
        add_snapshot_routes(app, self.snapshots)
        add_camera_routes(app, lambda: self.desk_cameras, self.snapshots, self._audit,
                          self.clock, zone_names)
        host = self._http_host()
        port = self.overrides.http_port
        runner = await serve(app, host, http.port if port is None else port)
        self.http_port = int(runner.addresses[0][1])
        if not is_loopback(host):
            # check-config refuses this without allow_remote; said again where it runs.
            log.warning("http api bound beyond loopback host=%s port=%d: it asks no"
                        " credentials, anyone who reaches it reads alerts and metrics",
                        host, self.http_port)
        return runner

    async def _housekeeping(self, pipeline: Pipeline) -> None:
        last_retention = self.clock.monotonic()
        while True:
            await asyncio.sleep(1.0)
            # The watchdog is fed only while the pipeline itself moves and the store
            # commits, not on a plain timer.
            moving = self.clock.monotonic() - pipeline.last_progress < PROGRESS_DEADLINE_S
            if moving and self.store_healthy():
                notify("WATCHDOG=1")
            if self.clock.monotonic() - last_retention >= RETENTION_EVERY_S:
                last_retention = self.clock.monotonic()
                deleted = await self.store.run_retention(self.clock.now())
                self.metrics.states_dropped(deleted["outbox_states_for_bound"])
                if any(deleted.values()):
                    log.info("retention deleted=%s", deleted)


def freeze_heap() -> None:
    """Move everything alive after start-up (modules, models, profiles, the site) out of
    the garbage collector's sight. A full collection then walks only what came since: at
    10,000 reports/s one took about 70 ms, twice a second, each a pause of the event loop
    that every alarm in flight waited through (docs/benchmarks.md)."""
    gc.collect()
    gc.freeze()
    log.info("heap frozen objects=%d", gc.get_freeze_count())


def _tls(cfg: TlsConfig | None) -> Tls | None:
    return None if cfg is None else Tls(cfg.ca_file, cfg.cert_file, cfg.key_file)


