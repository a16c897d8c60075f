"""The operations files, checked with the real tools: promtool on the Prometheus config and
rules, mosquitto on the broker config, every metric name against a rendered metrics page."""

from __future__ import annotations

import getpass
import json
import queue
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from gateway.cli import main as cli_main
from gateway.clock import SystemClock
from gateway.config import SecretRef, check_config, load_site
from gateway.events import Reading, Severity
from gateway.lift_metrics import LiftCollector
from gateway.lifts import build_modules
from gateway.metering import Metering
from gateway.meters import meter_specs
from gateway.metrics import Metrics
from gateway.secrets import resolve_secret
from gateway.vehicles.wiring import Gates
from tests.brokers import free_port, mosquitto_binary, wait_port

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "config" / "prometheus"
GRAFANA = ROOT / "config" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "compound-gateway.json"
UNIT = ROOT / "systemd" / "compound-gateway.service"
BROKER_CONF = ROOT / "config" / "mosquitto.conf"
OPERATIONS = ROOT / "docs" / "operations.md"

METRIC_NAME = re.compile(r"\bgateway_[a-z0-9_]+\b")
# Panels Grafana ships with: the site is air-gapped, so no plugin can be installed.
CORE_PANELS = frozenset({"row", "stat", "timeseries", "table", "bargauge", "gauge", "text"})
SEVERITIES = frozenset({"minor", "major", "critical"})


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool") or "/usr/bin/promtool"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(PROMETHEUS / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def dashboard_queries() -> list[str]:
    """Panel queries and the template variables' label_values() lookups."""
    variables = [v["definition"] for v in dashboard()["templating"]["list"]]
    return dashboard_exprs() + variables


def unit_directives() -> dict[str, list[str]]:
    """`Section.Key` -> values in file order (a key may repeat, as systemd allows)."""
    directives: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        directives.setdefault(f"{section}.{key}", []).append(value)
    return directives


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name on a metrics page where each family has at least one sample."""
    m = Metrics()
    m.event("fire.detector.alarm")
    m.readings(48)
    m.rejected("mqtt", "bad_json")
    m.ingest_to_store(0.004)
    m.alarm_to_forward(0.030)
    m.forwarded("desk")
    m.forward_failed("desk", "timeout")
    m.link_failed("mqtt:site", "taken_over")
    m.device_transition("mqtt:site", "up")
    m.alert_raised(Severity.CRITICAL)
    m.forward_target("ops")
    m.outbox_bound(1_000_000)
    # The outbox source fails on the first scrape only: the error counter then stays on
    # the page beside the outbox families.
    failures = iter([True])

    def outbox() -> dict[str, tuple[int, float | None]]:
        if next(failures, False):
            raise RuntimeError("outbox unreadable")
        return {"desk": (3, 1.5)}

    m.bind(
        alerts_active=lambda: {"critical": 1},
        outbox=outbox,
        lanes=lambda: {"alarm": (0, 0), "event": (1, 0), "telemetry": (10, 7)},
        store=lambda: {"writer_queue_depth": 0, "commits_total": 812,
                       "last_commit_seconds": 0.003},
    )
    # The shipped site's meters, each read once.
    metering = Metering(meter_specs(load_site(ROOT / "config" / "site.yaml"),
                                    ROOT / "config" / "profiles"))
    for spec in metering.specs.values():
        for metric in (*spec.totals, *spec.rates):
            metering.observe(Reading(spec.meter, metric, 1.0, "", 0.0))
    m.registry.register(metering)
    # The shipped site's lifts, each heard once, and its fire panel.
    lifts = build_modules(load_site(ROOT / "config" / "site.yaml"))
    for spec in lifts.elevator.snapshot():
        for counter in ("trips", "running_hours", "door_cycles"):
            lifts.elevator.observe(Reading(str(spec["lift"]), counter, 1.0, "", 0.0), 0.0)
    m.registry.register(LiftCollector(lambda: lifts))
    # The shipped site's barrier gates: their occupancy, one answer and one decision.
    site = load_site(ROOT / "config" / "site.yaml")
    gates = Gates(site.devices_of("http_push"), site.gates, tmp_path_factory.mktemp("gates"),
                  timezone=site.site.timezone, clock=SystemClock())
    gates.register_metrics(m.registry)
    gates.rules()
    gates._answered("vzenith", 0.004)
    gates._decided("gate-main-in", "open")
    gates.close()
    m.render()
    page = m.render()[0].decode()
    return {s.name for family in text_string_to_metric_families(page) for s in family.samples}


# ---- Prometheus ------------------------------------------------------------------------
def test_prometheus_config_and_its_rule_file_pass_promtool() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_alert_rules_pass_promtool() -> None:
    result = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_alert_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(PROMETHEUS / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_prometheus_job_scrapes_the_gateway_the_rules_name() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    gateway = jobs["compound-gateway"]
    assert gateway["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    assert gateway["scrape_interval"] == "15s"
    assert all('job="compound-gateway"' in rule["expr"] for rule in alert_rules())


def test_every_alert_has_a_gateway_severity_and_a_summary() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]


@pytest.mark.parametrize(
    ("source", "queries"),
    [("alerts.yml", lambda: [r["expr"] for r in alert_rules()]),
     ("dashboard", dashboard_queries)],
)
def test_every_metric_used_is_on_the_rendered_page(
    source: str, queries: Callable[[], list[str]], exported: set[str]
) -> None:
    assert "gateway_metrics_source_errors_total" in exported
    used = {name for query in queries() for name in METRIC_NAME.findall(query)}
    assert len(used) >= 8, f"{source} uses too few gateway metrics: {sorted(used)}"
    assert used - exported == set(), f"{source} names metrics the gateway does not export"


# ---- Grafana ---------------------------------------------------------------------------
def test_the_dashboard_shows_what_the_facilities_manager_needs() -> None:
    used = {name for query in dashboard_queries() for name in METRIC_NAME.findall(query)}
    assert {
        "gateway_alerts_active", "gateway_events_total", "gateway_readings_total",
        "gateway_device_up", "gateway_outbox_depth", "gateway_outbox_oldest_age_seconds",
        "gateway_alarm_to_forward_seconds_bucket", "gateway_bus_queue_depth",
        "gateway_bus_dropped_total", "gateway_store_commits_total",
    } <= used


def test_the_dashboard_shows_the_barrier_gates() -> None:
    used = {name for query in dashboard_queries() for name in METRIC_NAME.findall(query)}
    assert {
        "gateway_zone_occupancy", "gateway_gate_decisions_total",
        "gateway_gate_answer_seconds_bucket", "gateway_payloads_rejected_total",
    } <= used
    exprs = dashboard_exprs()
    # The answer budget is a p99; refused pushes are those of the gate drivers.
    assert any("histogram_quantile(0.99" in e and "gateway_gate_answer_seconds" in e
               for e in exprs)
    assert any("gateway_payloads_rejected_total" in e and "http_push" in e for e in exprs)
    for expr in exprs:
        if "gateway_gate_decisions_total" in expr:
            assert "increase(" in expr, expr


def test_the_dashboard_shows_energy_and_water_per_building_and_system() -> None:
    used = {name for query in dashboard_queries() for name in METRIC_NAME.findall(query)}
    assert {
        "gateway_consumption_energy_kwh_total", "gateway_consumption_water_m3_total",
        "gateway_consumption_gas_nm3_total", "gateway_meter_power_kw",
        "gateway_meter_water_flow_m3h", "gateway_meter_gas_flow_nm3h",
        "gateway_meter_energy_kwh_total",
    } <= used
    # Counters are read as increases, never as raw totals summed across restarts.
    for expr in dashboard_exprs():
        if "gateway_consumption_" in expr:
            assert "increase(" in expr, expr


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no expression checker offline; recording rules get the same parser.
    exprs = dashboard_exprs()
    rules = [
        {"record": f"dashboard:query_{i}",
         "expr": e.replace("$__rate_interval", "1m").replace("$instance", ".+")}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_dashboard_uses_core_panels_and_the_provisioned_datasource() -> None:
    sources = load_yaml(GRAFANA / "provisioning" / "datasources.yml")["datasources"]
    assert [s["type"] for s in sources] == ["prometheus"]
    uid = sources[0]["uid"]
    doc = dashboard()
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["type"] in CORE_PANELS, p["title"]
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == uid, p["title"]
        assert {t["datasource"]["uid"] for t in p["targets"]} == {uid}, p["title"]
    assert {v["datasource"]["uid"] for v in doc["templating"]["list"]} == {uid}


def test_grafana_loads_the_dashboard_from_one_file_provider() -> None:
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards.yml")["providers"]
    assert [(p["type"], p["options"]["path"]) for p in providers] == [
        ("file", "/var/lib/grafana/dashboards/compound-gateway")
    ]
    assert dashboard()["uid"] == "compound-gateway"


# ---- systemd ---------------------------------------------------------------------------
def test_unit_is_a_notify_service_with_a_watchdog() -> None:
    u = unit_directives()
    assert u["Service.Type"] == ["notify"]
    assert u["Service.WatchdogSec"] == ["30"]
    assert u["Service.Restart"] == ["always"]
    assert u["Service.TimeoutStopSec"] == ["10"]
    assert u["Service.StateDirectory"] == ["compound-gateway"]
    # sd_notify datagrams travel over a unix socket.
    assert "AF_UNIX" in u["Service.RestrictAddressFamilies"][0].split()
    assert u["Service.ExecStart"][0].split()[1:] == [
        "run", "--site", "/etc/compound-gateway/site.yaml",
        "--data-dir", "/var/lib/compound-gateway",
    ]


def test_the_units_command_line_is_one_the_cli_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "site.yaml"
    args = [
        str(missing) if a == "/etc/compound-gateway/site.yaml" else a
        for a in unit_directives()["Service.ExecStart"][0].split()[1:]
    ]
    # argparse would raise SystemExit on an unknown flag; the missing site file returns 2.
    assert cli_main(args) == 2
    assert str(missing) in capsys.readouterr().err


def test_unit_holds_no_secret_and_passes_the_broker_password_as_a_credential(
    tmp_path: Path,
) -> None:
    u = unit_directives()
    assert not [k for k in u if k.split(".")[1].startswith(("SetCredential", "EnvironmentFile"))]
    names = [v.partition("=")[0] for v in u.get("Service.Environment", [])]
    assert not [n for n in names if re.search("PASS|SECRET|TOKEN|KEY", n, re.IGNORECASE)]
    assert u["Service.LoadCredential"] == [
        "broker-password:/etc/compound-gateway/broker-password"
    ]
    name, _, _ = u["Service.LoadCredential"][0].partition(":")
    (tmp_path / name).write_text("from-the-credential\n")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_secret(SecretRef(credential=name), environ) == "from-the-credential"


def test_the_secure_site_file_edited_as_the_docs_say_resolves_its_credential(
    tmp_path: Path,
) -> None:
    text = (ROOT / "config" / "site.secure.yaml").read_text(encoding="utf-8")
    edited = text.replace(
        "password: {env: GATEWAY_BROKER_PASSWORD}", "password: {credential: broker-password}"
    )
    assert edited != text
    sed = "s/password: {env: GATEWAY_BROKER_PASSWORD}/password: {credential: broker-password}/"
    assert sed in OPERATIONS.read_text(encoding="utf-8")
    site = tmp_path / "site.yaml"
    site.write_text(edited, encoding="utf-8")
    shutil.copytree(ROOT / "config" / "profiles", tmp_path / "profiles")
    # What the docs copy beside it: the savings report's daily temperatures.
    assert "install -m 0644 config/changsha-temperature.csv" in OPERATIONS.read_text(
        encoding="utf-8")
    shutil.copy(ROOT / "config" / "changsha-temperature.csv", tmp_path)
    (tmp_path / "broker-password").write_text("s3cret\n")
    assert check_config(site, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)}) == []
    unresolved = check_config(site, environ={})
    assert [i.message for i in unresolved] == [
        "secret credential broker-password: CREDENTIALS_DIRECTORY is not set "
        "(the service must be started with LoadCredential=)"
    ]


def test_the_docs_name_the_paths_the_files_use() -> None:
    docs = OPERATIONS.read_text(encoding="utf-8")
    for path in (
        "/etc/compound-gateway/site.yaml", "/etc/compound-gateway/broker-password",
        "/var/lib/compound-gateway", "/opt/compound-gateway", "/etc/mosquitto/passwd",
        "/etc/mosquitto/conf.d/compound-gateway.conf",
        "/var/lib/grafana/dashboards/compound-gateway",
    ):
        assert path in docs, path


# ---- mosquitto -------------------------------------------------------------------------
class Client:
    """A paho client whose acknowledgements and messages a plain test can wait for."""

    def __init__(self, port: int, client_id: str, user: str | None, password: str | None,
                 *, clean_session: bool = True) -> None:
        self.connacks: queue.Queue[tuple[bool, str]] = queue.Queue()
        self.subacks: queue.Queue[list[str]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=clean_session)
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = lambda _c, _u, flags, reason, _p: self.connacks.put(
            (flags.session_present, str(reason)))
        c.on_subscribe = lambda _c, _u, _mid, reasons, _p: self.subacks.put(
            [str(r) for r in reasons])
        c.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.mqtt = c

    def connack(self) -> tuple[bool, str]:
        return self.connacks.get(timeout=10)

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


class SiteBroker:
    """mosquitto started as on Debian: its main file, and ours in conf.d, on a free port."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.procs: list[subprocess.Popen[bytes]] = []
        conf_d = root / "conf.d"
        conf_d.mkdir()
        passwd = root / "passwd"
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for flags, user, password in ((["-c"], "gateway", "gw-pass"), ([], "bridge", "br-pass")):
            subprocess.run([tool, *flags, "-b", str(passwd), user, password],
                           check=True, timeout=30)
        ours = BROKER_CONF.read_text(encoding="utf-8")
        for on_site, here in (
            ("listener 1883\n", f"listener {self.port} 127.0.0.1\n"),
            ("password_file /etc/mosquitto/passwd\n", f"password_file {passwd}\n"),
        ):
            assert ours.count(on_site) == 1, on_site
            ours = ours.replace(on_site, here)
        (conf_d / "compound-gateway.conf").write_text(ours, encoding="utf-8")
        self.main = root / "mosquitto.conf"
        self.main.write_text(
            # As root, mosquitto would switch to the user `mosquitto`, who cannot read root.
            f"user {getpass.getuser()}\n"
            f"persistence true\npersistence_location {root}/\n"
            f"log_dest file {root}/mosquitto.log\n"
            f"include_dir {conf_d}\n"
        )

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.main)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port("127.0.0.1", self.port)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[SiteBroker]:
    broker = SiteBroker(tmp_path)
    yield broker
    broker.stop_all()


def test_the_site_broker_refuses_anonymous_and_keeps_queued_alarms_across_a_restart(
    site_broker: SiteBroker,
) -> None:
    port = site_broker.port
    proc = site_broker.start()

    for client_id, user, password in (("anonymous", None, None), ("guess", "gateway", "x")):
        refused = Client(port, client_id, user, password)
        assert refused.connack() == (False, "Not authorized")
        refused.close()

    # The gateway's persistent ingest session subscribes at QoS 1, then goes away.
    ingest = Client(port, "furong-gw-ingest", "gateway", "gw-pass", clean_session=False)
    assert ingest.connack() == (False, "Success")
    ingest.mqtt.subscribe("furong/fire/heat/#", qos=1)
    assert ingest.subacks.get(timeout=10) == ["Granted QoS 1"]
    ingest.close()

    bridge = Client(port, "detector-bridge", "bridge", "br-pass")
    assert bridge.connack() == (False, "Success")
    alarm = b'{"seq": 7, "temp_c": 71.5, "alarm": true}'
    sent = bridge.mqtt.publish("furong/fire/heat/hd-main-01", alarm, qos=1)
    sent.wait_for_publish(timeout=10)
    assert sent.is_published()
    bridge.close()

    proc.terminate()
    assert proc.wait(timeout=10) == 0
    site_broker.start()

    ingest = Client(port, "furong-gw-ingest", "gateway", "gw-pass", clean_session=False)
    assert ingest.connack() == (True, "Success")
    assert ingest.messages.get(timeout=10) == ("furong/fire/heat/hd-main-01", alarm)
    ingest.close()
