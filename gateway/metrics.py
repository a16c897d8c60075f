"""The gateway's Prometheus metrics: hot-path counters and histograms, and gauges read at
scrape time from callables the daemon binds. Labels stay bounded (no plates, ids or error text).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway import __version__
from gateway.events import Severity

log = logging.getLogger(__name__)

DEVICE_STATES: Final = ("up", "degraded", "down", "stale")
# A degraded device still answers (some reads fail); `up` follows reachability.
_REACHABLE: Final = frozenset({"up", "degraded"})

# Alarm paths are budgeted in milliseconds; the top buckets catch an outage backlog.
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)

# evicted: an idle connection closed for a newcomer at max_connections; busy: a newcomer
# answered 503 because none was idle; header_timeout: headers too slow; feed_limit: a
# live feed answered 503 at max_feed_clients.
HTTP_REFUSALS: Final = ("evicted", "busy", "header_timeout", "feed_limit")

AlertsActive = Callable[[], Mapping[str, int]]
OutboxState = Callable[[], Mapping[str, tuple[int, float | None]]]
LaneState = Callable[[], Mapping[str, tuple[int, int]]]
StoreState = Callable[[], Mapping[str, float]]
DeadLetters = Callable[[], Mapping[str, int]]


class Metrics:
    """One registry per instance, so tests and several gateways in one process never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._events = Counter(
            "gateway_events", "Events taken from the bus, by kind.", ["kind"], registry=r
        )
        self._readings = Counter(
            "gateway_readings", "Telemetry readings taken from the bus.", registry=r
        )
        self._rejected = Counter(
            "gateway_payloads_rejected",
            "Device messages dropped as malformed, by driver and reason.",
            ["driver", "reason"],
            registry=r,
        )
        self._ingest_to_store = Histogram(
            "gateway_ingest_to_store_seconds",
            "Time from receiving an item to its commit in the store.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._alarm_to_forward = Histogram(
            "gateway_alarm_to_forward_seconds",
            "Time from receiving an alarm to its acknowledgement by a forward target.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._forwarded = Counter(
            "gateway_forwarded", "Outbox rows acknowledged by a target.", ["target"], registry=r
        )
        self._forward_failed = Counter(
            "gateway_forward_failed",
            "Failed attempts to hand an outbox row to a target, by reason.",
            ["target", "reason"],
            registry=r,
        )
        self._dead_lettered = Counter(
            "gateway_outbox_dead_lettered",
            "Outbox rows a target refused for good (HTTP 4xx), moved to the dead letters.",
            ["target"],
            registry=r,
        )
        self._states_dropped = Counter(
            "gateway_outbox_states_dropped",
            "State rows dropped, oldest first, because the outbox reached its row bound.",
            registry=r,
        )
        self._outbox_max_rows = Gauge(
            "gateway_outbox_max_rows",
            "The outbox's row bound (retention.outbox_max_rows).",
            registry=r,
        )
        self._http_refused = Counter(
            "gateway_http_refused",
            "HTTP connections closed or requests refused to keep the API bounded, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in HTTP_REFUSALS:
            self._http_refused.labels(reason)
        self._http_bad_requests = Counter(
            "gateway_http_bad_requests",
            "Malformed HTTP requests answered 400, by parser error kind.",
            ["kind"],
            registry=r,
        )
        self._http_connections = Gauge(
            "gateway_http_connections", "Open HTTP connections.", registry=r
        )
        self._http_feed_clients = Gauge(
            "gateway_http_feed_clients", "Live feed (SSE) clients connected.", registry=r
        )
        self._device_state = Gauge(
            "gateway_device_state",
            "1 for the state a device is in, 0 for the others.",
            ["device", "state"],
            registry=r,
        )
        self._device_up = Gauge(
            "gateway_device_up", "1 while a device answers (up or degraded).", ["device"],
            registry=r,
        )
        self._alerts_raised = Counter(
            "gateway_alerts_raised", "Alerts raised, by severity.", ["severity"], registry=r
        )
        self._reports_lost = Counter(
            "gateway_reports_lost",
            "Device reports missing from a device's own numbering (gaps), by driver.",
            ["driver"], registry=r,
        )
        self._reports_duplicate = Counter(
            "gateway_reports_duplicate",
            "Device reports dropped as repeats of one already handled, by driver.",
            ["driver"], registry=r,
        )
        self._seq_restarts = Counter(
            "gateway_device_seq_restarts",
            "Devices that started numbering their reports again (a device restart), by driver.",
            ["driver"], registry=r,
        )
        self._link_failures = Counter(
            "gateway_link_failures",
            "Times a link (a broker, a webhook, a device line) ended, by what ended it: auth,"
            " taken_over (another client took the session), unreachable, protocol, delivery,"
            " store, other.", ["link", "kind"], registry=r,
        )
        self._core_restarts = Counter(
            "gateway_core_restarts",
            "Times the core (rules, alerts, drivers) was rebuilt from the store after a failed"
            " commit.", registry=r,
        )
        build = Gauge(
            "gateway_build_info", "The running gateway's version.", ["version"], registry=r
        )
        build.labels(__version__).set(1)

        # `.labels()` costs about a microsecond: the hot paths reuse the children.
        self._event_children: dict[str, Counter] = {}
        self._rejected_children: dict[tuple[str, str], Counter] = {}
        self._forwarded_children: dict[str, Counter] = {}
        self._failed_children: dict[tuple[str, str], Counter] = {}
        self._raised_children = {s.label: self._alerts_raised.labels(s.label) for s in Severity}
        self._sources = _BoundSources()
        r.register(self._sources)

    def event(self, kind: str) -> None:
        child = self._event_children.get(kind)
        if child is None:
            child = self._event_children[kind] = self._events.labels(kind)
        child.inc()

    def readings(self, n: int) -> None:
        self._readings.inc(n)

    def rejected(self, driver: str, reason: str) -> None:
        key = (driver, reason)
        child = self._rejected_children.get(key)
        if child is None:
            child = self._rejected_children[key] = self._rejected.labels(driver, reason)
        child.inc()

    def ingest_to_store(self, seconds: float) -> None:
        self._ingest_to_store.observe(seconds)

    def alarm_to_forward(self, seconds: float) -> None:
        self._alarm_to_forward.observe(seconds)

    def forwarded(self, target: str) -> None:
        self._forwarded_child(target).inc()

    def forward_failed(self, target: str, reason: str) -> None:
        key = (target, reason)
        child = self._failed_children.get(key)
        if child is None:
            child = self._failed_children[key] = self._forward_failed.labels(target, reason)
        child.inc()

    def reports_lost(self, driver: str, n: int) -> None:
        self._reports_lost.labels(driver).inc(n)

    def reports_duplicate(self, driver: str) -> None:
        self._reports_duplicate.labels(driver).inc()

    def device_seq_restarted(self, driver: str) -> None:
        self._seq_restarts.labels(driver).inc()

    def link_failed(self, link: str, kind: str) -> None:
        self._link_failures.labels(link, kind).inc()

    def core_restarted(self) -> None:
        self._core_restarts.inc()

    def forward_target(self, target: str) -> None:
        """Start a target's counters at 0, so the first failure is an increase, not a new series."""
        self._forwarded_child(target)
        self._dead_lettered.labels(target)

    def _forwarded_child(self, target: str) -> Counter:
        child = self._forwarded_children.get(target)
        if child is None:
            child = self._forwarded_children[target] = self._forwarded.labels(target)
        return child

    def dead_lettered(self, target: str) -> None:
        self._dead_lettered.labels(target).inc()

    def outbox_bound(self, max_rows: int) -> None:
        self._outbox_max_rows.set(max_rows)

    def states_dropped(self, n: int) -> None:
        self._states_dropped.inc(n)

    def http_refused(self, reason: str) -> None:
        """`reason` is one of HTTP_REFUSALS."""
        self._http_refused.labels(reason).inc()

    def http_bad_request(self, kind: str) -> None:
        """`kind` is the parser's exception class name: a bounded set."""
        self._http_bad_requests.labels(kind).inc()

    def bind_http(self, *, connections: Callable[[], int], feeds: Callable[[], int]) -> None:
        """Open connections and live feeds, read at scrape time."""
        self._http_connections.set_function(connections)
        self._http_feed_clients.set_function(feeds)

    def alert_raised(self, severity: Severity) -> None:
        self._raised_children[severity.label].inc()

    def device_transition(self, device: str, state: str) -> None:
        """Record a supervisor's transition; `state` is one of DEVICE_STATES."""
        if state not in DEVICE_STATES:
            raise ValueError(f"unknown device state {state!r}; expected one of {DEVICE_STATES}")
        for each in DEVICE_STATES:
            self._device_state.labels(device, each).set(1 if each == state else 0)
        self._device_up.labels(device).set(1 if state in _REACHABLE else 0)

    def bind(
        self,
        *,
        alerts_active: AlertsActive,
        outbox: OutboxState,
        lanes: LaneState,
        store: StoreState,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        """Gauges read at scrape time.

        `alerts_active`: severity label -> active alerts. `outbox`: target -> (rows, age of
        the oldest row in seconds or None when empty). `lanes`: lane -> (depth, dropped since
        start). `store`: `writer_queue_depth`, `commits_total`, `last_commit_seconds` (how
        long the latest commit took). `dead_letters`: target -> dead-letter rows kept.
        """
        self._sources.alerts_active = alerts_active
        self._sources.outbox = outbox
        self._sources.lanes = lanes
        self._sources.store = store
        self._sources.dead_letters = dead_letters

    def render(self) -> tuple[bytes, str]:
        """The scrape page and its content type (the classic text format it is written in)."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


class _BoundSources:
    """Reads the bound callables on each scrape; one failing source costs only its families."""

    def __init__(self) -> None:
        self.alerts_active: AlertsActive | None = None
        self.outbox: OutboxState | None = None
        self.lanes: LaneState | None = None
        self.store: StoreState | None = None
        self.dead_letters: DeadLetters | None = None
        self._failing: set[str] = set()
        self._error_counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily(
            "gateway_metrics_source_errors",
            "Scrapes in which a bound metrics source raised, by source.",
            labels=["source"],
        )
        for name, build in (
            ("alerts", self._alerts),
            ("outbox", self._outbox),
            ("outbox_dead", self._dead),
            ("lanes", self._lanes),
            ("store", self._store),
        ):
            try:
                families = build()
            except Exception:
                if name not in self._failing:
                    log.exception("metrics source failed source=%s", name)
                self._failing.add(name)
                self._error_counts[name] = self._error_counts.get(name, 0) + 1
                continue
            if name in self._failing:
                log.info("metrics source recovered source=%s", name)
                self._failing.discard(name)
            yield from families
        for name, n in sorted(self._error_counts.items()):
            errors.add_metric([name], n)
        yield errors

    def _alerts(self) -> list[Metric]:
        if self.alerts_active is None:
            return []
        counts = self.alerts_active()
        active = GaugeMetricFamily(
            "gateway_alerts_active", "Alerts firing now, by severity.", labels=["severity"]
        )
        # Every severity is present so a dashboard sees 0, not "no data".
        for s in Severity:
            active.add_metric([s.label], counts.get(s.label, 0))
        return [active]

    def _outbox(self) -> list[Metric]:
        if self.outbox is None:
            return []
        depth = GaugeMetricFamily(
            "gateway_outbox_depth", "Outbox rows not yet acknowledged, by target.",
            labels=["target"],
        )
        oldest = GaugeMetricFamily(
            "gateway_outbox_oldest_age_seconds",
            "Age of the oldest unacknowledged outbox row (0 when empty), by target.",
            labels=["target"],
        )
        for target, (rows, age) in sorted(self.outbox().items()):
            depth.add_metric([target], rows)
            oldest.add_metric([target], 0.0 if age is None else age)
        return [depth, oldest]

    def _dead(self) -> list[Metric]:
        if self.dead_letters is None:
            return []
        rows = GaugeMetricFamily(
            "gateway_outbox_dead_letter_rows",
            "Dead-letter rows kept in the store (refused for good, never resent), by target.",
            labels=["target"],
        )
        for target, n in sorted(self.dead_letters().items()):
            rows.add_metric([target], n)
        return [rows]

    def _lanes(self) -> list[Metric]:
        if self.lanes is None:
            return []
        depth = GaugeMetricFamily(
            "gateway_bus_queue_depth", "Items waiting on a bus lane.", labels=["lane"]
        )
        dropped = CounterMetricFamily(
            "gateway_bus_dropped", "Items a bus lane dropped under overload.", labels=["lane"]
        )
        for lane, (n, lost) in sorted(self.lanes().items()):
            depth.add_metric([lane], n)
            dropped.add_metric([lane], lost)
        return [depth, dropped]

    def _store(self) -> list[Metric]:
        if self.store is None:
            return []
        state = self.store()
        return [
            GaugeMetricFamily(
                "gateway_store_writer_queue_depth",
                "Items waiting for the store's writer.",
                value=state["writer_queue_depth"],
            ),
            CounterMetricFamily(
                "gateway_store_commits", "Transactions the store's writer committed.",
                value=state["commits_total"],
            ),
            GaugeMetricFamily(
                "gateway_store_last_commit_duration_seconds",
                "How long the store's latest commit took.",
                value=state["last_commit_seconds"],
            ),
            CounterMetricFamily(
                "gateway_store_write_failures",
                "Store batches whose commit failed (full disk, I/O error, read-only file).",
                value=state.get("write_failures_total", 0.0),
            ),
            GaugeMetricFamily(
                "gateway_store_oldest_uncommitted_age_seconds",
                "Age of the oldest batch waiting for the store's writer (0 when none).",
                value=state.get("oldest_uncommitted_seconds", 0.0),
            ),
            GaugeMetricFamily(
                "gateway_store_disk_free_bytes",
                "Free bytes on the file system that holds the store.",
                value=state.get("disk_free_bytes", 0.0),
            ),
            GaugeMetricFamily(
                "gateway_store_healthy",
                "1 while the store commits, 0 from a failed commit until it commits again.",
                value=state.get("healthy", 1.0),
            ),
            GaugeMetricFamily(
                "gateway_store_wal_pages",
                "Pages in the store's WAL not yet started over (checkpoints keep it short).",
                value=state.get("wal_frames", 0.0),
            ),
            CounterMetricFamily(
                "gateway_store_checkpoint_failures",
                "Checkpoints that failed; their pages stay in the WAL (nothing is lost).",
                value=state.get("checkpoint_failures_total", 0.0),
            ),
        ]
