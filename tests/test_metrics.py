"""The metrics page: values, bounded labels, and a clean `promtool check metrics`."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

import pytest

from gateway import __version__
from gateway.events import Severity
from gateway.metrics import DEVICE_STATES, LATENCY_BUCKETS, Metrics


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def populated() -> Metrics:
    """Every family the gateway exposes, with at least one sample."""
    m = Metrics()
    m.event("fire.detector.alarm")
    m.event("gate.plate")
    m.readings(48)
    m.rejected("mqtt", "bad_json")
    m.ingest_to_store(0.004)
    m.alarm_to_forward(0.030)
    m.forwarded("city-119")
    m.forward_failed("city-119", "timeout")
    m.device_transition("hd-0101", "up")
    m.device_transition("elevator-3", "stale")
    m.alert_raised(Severity.CRITICAL)
    m.forward_target("webhook")
    m.dead_lettered("webhook")
    m.states_dropped(12)
    m.outbox_bound(1_000_000)
    m.bind(
        alerts_active=lambda: {"critical": 1, "major": 2},
        outbox=lambda: {"city-119": (3, 1.5), "webhook": (0, None)},
        lanes=lambda: {"alarm": (0, 0), "event": (2, 0), "telemetry": (10, 7)},
        store=lambda: {"writer_queue_depth": 5, "commits_total": 812,
                       "last_commit_seconds": 0.003},
        dead_letters=lambda: {"webhook": 1},
    )
    return m


@pytest.mark.parametrize(
    ("state", "up"),
    [("up", 1.0), ("degraded", 1.0), ("down", 0.0), ("stale", 0.0)],
)
def test_device_transition_sets_one_state(state: str, up: float) -> None:
    m = Metrics()
    m.device_transition("hd-0101", "down" if state == "up" else "up")
    m.device_transition("hd-0101", state)
    for each in DEVICE_STATES:
        expected = 1.0 if each == state else 0.0
        assert value(m, "gateway_device_state", device="hd-0101", state=each) == expected
    assert value(m, "gateway_device_up", device="hd-0101") == up


def test_device_transition_refuses_an_unknown_state() -> None:
    with pytest.raises(ValueError, match="unknown device state"):
        Metrics().device_transition("hd-0101", "on fire")


def test_hot_path_counters() -> None:
    m = Metrics()
    for _ in range(3):
        m.event("fire.detector.alarm")
    m.readings(100)
    m.readings(20)
    m.rejected("modbus", "crc")
    m.rejected("modbus", "crc")
    m.forwarded("city-119")
    m.forward_failed("city-119", "puback_timeout")
    m.alert_raised(Severity.MAJOR)
    assert value(m, "gateway_events_total", kind="fire.detector.alarm") == 3
    assert value(m, "gateway_readings_total") == 120
    assert value(m, "gateway_payloads_rejected_total", driver="modbus", reason="crc") == 2
    assert value(m, "gateway_forwarded_total", target="city-119") == 1
    assert value(
        m, "gateway_forward_failed_total", target="city-119", reason="puback_timeout"
    ) == 1
    assert value(m, "gateway_alerts_raised_total", severity="major") == 1
    assert value(m, "gateway_alerts_raised_total", severity="critical") == 0
    assert value(m, "gateway_build_info", version=__version__) == 1


@pytest.mark.parametrize(
    ("seconds", "first_bucket"),
    [(0.0005, "0.001"), (0.003, "0.005"), (0.2, "0.25"), (7.0, "10.0"), (30.0, "+Inf")],
)
def test_latency_buckets_are_sized_for_milliseconds(seconds: float, first_bucket: str) -> None:
    assert LATENCY_BUCKETS[0] == 0.001
    assert LATENCY_BUCKETS[-1] == 10.0
    m = Metrics()
    m.alarm_to_forward(seconds)
    m.ingest_to_store(seconds)
    for name in ("gateway_alarm_to_forward_seconds", "gateway_ingest_to_store_seconds"):
        buckets = [*map(str, LATENCY_BUCKETS), "+Inf"]
        counts = [value(m, f"{name}_bucket", le=le) for le in buckets]
        # Cumulative: zero below the first bucket that holds the observation, one from it on.
        at = buckets.index(first_bucket)
        assert counts == [0.0] * at + [1.0] * (len(buckets) - at)


def test_bound_gauges_are_read_at_scrape_time() -> None:
    outbox: dict[str, tuple[int, float | None]] = {"city-119": (0, None)}
    m = Metrics()
    m.bind(alerts_active=lambda: {"critical": 2}, outbox=lambda: outbox,
           lanes=lambda: {"telemetry": (4, 9)},
           store=lambda: {"writer_queue_depth": 1, "commits_total": 3,
                          "last_commit_seconds": 0.002})
    assert value(m, "gateway_outbox_depth", target="city-119") == 0
    assert value(m, "gateway_outbox_oldest_age_seconds", target="city-119") == 0
    outbox["city-119"] = (40, 12.5)
    assert value(m, "gateway_outbox_depth", target="city-119") == 40
    assert value(m, "gateway_outbox_oldest_age_seconds", target="city-119") == 12.5
    # Severities with no alert read 0, so a dashboard shows 0 rather than "no data".
    assert value(m, "gateway_alerts_active", severity="critical") == 2
    assert value(m, "gateway_alerts_active", severity="info") == 0
    assert value(m, "gateway_bus_queue_depth", lane="telemetry") == 4
    assert value(m, "gateway_bus_dropped_total", lane="telemetry") == 9
    assert value(m, "gateway_store_writer_queue_depth") == 1
    assert value(m, "gateway_store_commits_total") == 3
    assert value(m, "gateway_store_last_commit_duration_seconds") == 0.002


def test_a_failing_source_costs_only_its_own_families() -> None:
    def broken() -> Mapping[str, tuple[int, float | None]]:
        raise RuntimeError("store is closed")

    m = Metrics()
    m.bind(alerts_active=lambda: {"minor": 1}, outbox=broken, lanes=lambda: {"alarm": (0, 0)},
           store=lambda: {"writer_queue_depth": 0, "commits_total": 0,
                          "last_commit_seconds": 0.0})
    page, _ = m.render()
    text = page.decode()
    assert 'gateway_alerts_active{severity="minor"} 1.0' in text
    assert "gateway_outbox_depth{" not in text
    assert 'gateway_metrics_source_errors_total{source="outbox"} 1.0' in text
    assert "store is closed" not in text  # error text never becomes a label


def test_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.event("gate.plate")
    assert value(a, "gateway_events_total", kind="gate.plate") == 1
    assert value(b, "gateway_events_total", kind="gate.plate") is None


def test_a_forward_target_starts_at_zero() -> None:
    m = Metrics()
    m.forward_target("ops")
    assert value(m, "gateway_outbox_dead_lettered_total", target="ops") == 0
    assert value(m, "gateway_forwarded_total", target="ops") == 0
    m.dead_lettered("ops")
    assert value(m, "gateway_outbox_dead_lettered_total", target="ops") == 1


def test_render_names_its_content_type() -> None:
    page, content_type = populated().render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert page.endswith(b"\n")


EXPECTED_FAMILIES = (
    "gateway_build_info",
    "gateway_events_total",
    "gateway_readings_total",
    "gateway_payloads_rejected_total",
    "gateway_ingest_to_store_seconds",
    "gateway_alarm_to_forward_seconds",
    "gateway_forwarded_total",
    "gateway_forward_failed_total",
    "gateway_device_state",
    "gateway_device_up",
    "gateway_alerts_raised_total",
    "gateway_alerts_active",
    "gateway_outbox_depth",
    "gateway_outbox_oldest_age_seconds",
    "gateway_outbox_dead_lettered_total",
    "gateway_outbox_dead_letter_rows",
    "gateway_outbox_states_dropped_total",
    "gateway_outbox_max_rows",
    "gateway_bus_queue_depth",
    "gateway_bus_dropped_total",
    "gateway_store_writer_queue_depth",
    "gateway_store_commits_total",
    "gateway_store_last_commit_duration_seconds",
)


def test_every_family_is_populated_and_promtool_finds_nothing_to_say() -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    page, _ = populated().render()
    text = page.decode()
    for family in EXPECTED_FAMILIES:
        assert re.search(rf"^{family}(_bucket)?[{{ ]", text, re.MULTILINE), family
    result = subprocess.run(
        [promtool, "check", "metrics"], input=page, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    assert result.stdout == b""
    assert result.stderr == b""
