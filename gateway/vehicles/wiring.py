"""The barrier gates' parts of the daemon, built from the site file: the registry, the
picture store, the vehicle rules, the push listener and its presence specs, the desk's
routes and the occupancy gauge. `gateway.app` holds one `Gates` and asks it for each."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from drivers.http_push.config import HttpPushDevice
from drivers.http_push.listener import GateSpec, Limits, PlateListener
from drivers.mqtt.config import MqttGateDevice
from gateway.clock import Clock
from gateway.contract import Sink
from gateway.rules.presence import PresenceSpec
from gateway.rules.vehicles import OUTCOMES, GatePolicy, GateRuleSpec, VehicleRules
from gateway.secrets import resolve_secret
from gateway.vehicles.config import GatesConfig
from gateway.vehicles.history import stored_reads
from gateway.vehicles.pictures import PictureStore
from gateway.vehicles.privacy import Pseudonyms
from gateway.vehicles.registry import DB_NAME, Registry, Vehicle

log = logging.getLogger("gateway.vehicles")


class Gates:
    def __init__(
        self, devices: list[HttpPushDevice], config: GatesConfig, data_dir: Path, *,
        timezone: str, clock: Clock, environ: Mapping[str, str] | None = None,
        port: int | None = None, controllers: list[MqttGateDevice] | None = None,
    ) -> None:
        self.port = config.listener.port if port is None else port
        self.devices = devices
        self.controllers = controllers or []
        self.config = config
        self.clock = clock
        self.environ = environ
        self.registry = Registry(data_dir / DB_NAME, timezone=timezone)
        key = config.pseudonym_key
        self.names = Pseudonyms(resolve_secret(key, environ).encode() if key else None,
                                forward=config.pseudonymise)
        self.pictures = PictureStore(data_dir / "plates", days=config.pictures_days)
        self.rule_module: VehicleRules | None = None
        self.listener: PlateListener | None = None
        self._answer_seconds: Histogram | None = None
        self._decisions: Counter | None = None
        self.registry.on_change(self._registry_changed)

    def close(self) -> None:
        self.registry.close()

    def rules(self, store_path: Path | None = None) -> VehicleRules:
        """A fresh module for each core build, from the registry as it is now; with
        `store_path`, occupancy and who is inside rebuilt from the stored reads."""
        c = self.config
        policy = GatePolicy(frozenset(c.fuzzy_open), c.held_open_s, c.tailgate_window_s,
                            c.refused_clear_s, c.overstay_grace_s, c.linkage_retry_s,
                            c.linkage_attempts, c.open_on_drill)
        specs = [GateRuleSpec(d.id, d.zone, d.direction, d.area, d.reports_loop)
                 for d in self.all_gates]
        module = VehicleRules(specs, policy, self.registry.vehicles(), self.names,
                              on_decided=self._decided)
        if store_path is not None:
            reads = stored_reads(store_path, {d.id for d in self.devices})
            passages = module.rebuild(reads)
            log.info("gate occupancy rebuilt reads=%d passages=%d occupancy=%s",
                     len(reads), passages, module.occupancy())
        self.rule_module = module
        return module

    def presence_specs(self) -> list[PresenceSpec]:
        return [PresenceSpec(d.id, d.zone, d.heartbeat_s,
                             "Gate camera" if isinstance(d, HttpPushDevice) else "Gate controller",
                             "heartbeat")
                for d in self.all_gates]

    @property
    def all_gates(self) -> list[HttpPushDevice | MqttGateDevice]:
        return [*self.devices, *self.controllers]

    def build_listener(self, sink: Sink) -> PlateListener:
        listen = self.config.listener
        specs = [
            GateSpec(d.id, d.zone, d.address, d.vendor,
                     resolve_secret(d.secret, self.environ).encode() if d.secret else None,
                     d.gate_api, d.direction, d.area)
            for d in self.devices
        ]
        self.listener = PlateListener(
            specs, sink, host=listen.host, port=self.port,
            limits=Limits(listen.max_body_kb * 1024, listen.max_picture_kb * 1024,
                          listen.decide_timeout_s, listen.verify_s),
            pictures=self.pictures, pseudonyms=self.names, clock=self.clock,
            on_answered=self._answered, on_decided=self._decided)
        return self.listener

    def _answered(self, vendor: str, seconds: float) -> None:
        if self._answer_seconds is not None:
            self._answer_seconds.labels(vendor).observe(seconds)

    def _decided(self, gate: str, outcome: str) -> None:
        if self._decisions is not None:
            self._decisions.labels(gate, outcome).inc()

    @property
    def push_port(self) -> int | None:
        return None if self.listener is None else self.listener.port

    def occupancy(self) -> dict[str, int]:
        return {} if self.rule_module is None else self.rule_module.occupancy()

    def register_metrics(self, registry: CollectorRegistry) -> None:
        from gateway.metrics import LATENCY_BUCKETS

        registry.register(_Occupancy(self.occupancy))
        self._answer_seconds = Histogram(
            "gateway_gate_answer_seconds",
            "From a plate camera's push received to its answer (the reply that opens the"
            " gate, or the 200 after the commit), by camera style.",
            ["vendor"], buckets=LATENCY_BUCKETS, registry=registry)
        self._decisions = Counter(
            "gateway_gate_decisions",
            "Plate reads by gate and outcome: refused; opened_confirmed (the barrier read"
            " open: its control, its own report or its loop) or opened_unconfirmed (it read"
            " closed, the command failed, or nothing said within 15 s), cameras and gate"
            " controllers alike; and for the cameras' pushes no_decision (none in time: not"
            " opened), offline (history, never opened), not_stored (not committed: the"
            " camera sends it again).",
            ["gate", "decision"], registry=registry)
        for d in self.all_gates:
            for outcome in OUTCOMES:
                self._decisions.labels(d.id, outcome)

    def _registry_changed(self, vehicles: list[Vehicle]) -> None:
        if self.rule_module is not None:
            self.rule_module.replace_vehicles(vehicles)
        log.info("vehicle registry changed vehicles=%d", len(vehicles))


class _Occupancy:
    """Vehicles inside each zone behind a gate, from entries and exits."""

    def __init__(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("gateway_zone_occupancy",
                                   "Vehicles inside a zone behind the barrier gates.",
                                   labels=["zone"])
        for zone, n in sorted(self._read().items()):
            family.add_metric([zone], float(n))
        yield family
