"""The site file: golden bad-config cases, the Furong site itself, and the pure checks."""

from __future__ import annotations

import dataclasses
import re
import shutil
from datetime import date
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from gateway.config import (
    ConfigIssue,
    FireRulesConfig,
    ModbusEndpoint,
    SecretRef,
    Site,
    SiteFileError,
    Topic,
    check_config,
    load_site,
    main_check_config,
    parse_modbus_address,
)
from gateway.errors import ConfigError
from gateway.secrets import Secret, resolve_secret

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases" / "config"
SITE = ROOT / "config" / "site.yaml"
SECURE_SITE = ROOT / "config" / "site.secure.yaml"

MINIMAL = """\
site: {id: furong, name: Furong test}
brokers:
  site: {host: 127.0.0.1}
buildings:
  - id: main
    name: main compound
    zones:
      - {id: main-office-a, name: office A}
      - {id: main-canteen, name: canteen, test_mode: true}
devices:
  - {driver: mqtt, id: hd-main-01, kind: heat_detector, zone: main-office-a, broker: site,
     topic: t/hd-main-01}
  - {driver: mqtt, id: hd-main-02, kind: heat_detector, zone: main-canteen, broker: site,
     topic: t/hd-main-02, enabled: false}
"""


def _relative(issue: ConfigIssue) -> str:
    return str(dataclasses.replace(issue, file=Path(issue.file).name))


def _write(tmp_path: Path, text: str) -> Path:
    """A site file with the shipped profiles beside it, as the daemon expects them."""
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    shutil.copytree(ROOT / "config" / "profiles", tmp_path / "profiles", dirs_exist_ok=True)
    return path


# --- golden cases -----------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_golden_case(case: str) -> None:
    expected = [
        line
        for line in (CASES / case / "expected.txt").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert expected, "a case must expect at least one issue"
    got = [_relative(i) for i in check_config(CASES / case / "site.yaml", environ={})]
    assert len(got) == len(expected), "\n".join(got)
    for want, issue in zip(expected, got, strict=True):
        assert issue.startswith(want), f"\nwant: {want}\ngot:  {issue}"


def test_load_site_raises_every_issue_as_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_site(CASES / "unknown-key" / "site.yaml")
    assert isinstance(caught.value, SiteFileError)
    assert [(i.line, i.key) for i in caught.value.errors] == [(3, "gatway"), (19, "devices[0].qos")]
    assert str(caught.value).splitlines() == [str(i) for i in caught.value.errors]


def test_load_site_does_not_resolve_secrets() -> None:
    site = load_site(CASES / "missing-secret" / "site.yaml")
    assert site.brokers["site"].password == SecretRef(env="GATEWAY_BROKER_PASSWORD")


@pytest.mark.parametrize(
    ("case", "secret"),
    [
        ("literal-password", "hunter2"),
        ("bad-camera-url", "hunter2"),
        ("bad-modbus-address", "secret@"),
    ],
)
def test_a_secret_typed_into_the_file_is_never_echoed(case: str, secret: str) -> None:
    path = CASES / case / "site.yaml"
    assert secret in path.read_text(encoding="utf-8")
    with pytest.raises(SiteFileError) as caught:
        load_site(path)
    assert secret not in str(caught.value)


def test_a_duplicate_yaml_key_does_not_echo_its_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "site: {id: furong, name: x}\nbrokers:\n  site:\n    host: a\n    host: s3cr3t-value\n",
    )
    issues = check_config(path, environ={})
    assert [(i.line, i.key) for i in issues] == [(5, "(yaml)")]
    assert "s3cr3t-value" not in str(issues[0])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "the site file is empty"),
        ("# only a comment\n", 1, "the site file is empty"),
        ("- a\n- b\n", 1, "the site file is not a mapping of sections"),
        ("site: [unclosed\n", 2, "invalid YAML"),
    ],
)
def test_a_file_that_is_no_site(tmp_path: Path, text: str, line: int, message: str) -> None:
    [issue] = check_config(_write(tmp_path, text), environ={})
    assert issue.line == line
    assert issue.message.startswith(message)


def test_a_missing_file_is_an_issue_not_a_crash(tmp_path: Path) -> None:
    [issue] = check_config(tmp_path / "absent.yaml", environ={})
    assert (issue.line, issue.key) == (0, "(file)")
    assert "cannot read" in issue.message


def test_issue_format() -> None:
    issue = ConfigIssue("config/site.yaml", 42, "devices[3].address", "bad")
    assert str(issue) == "config/site.yaml:42 devices[3].address: bad"


# --- the Furong site -------------------------------------------------------------------------


def test_site_yaml_is_the_furong_compound() -> None:
    site = load_site(SITE)
    assert site.site.id == "furong"
    assert [b.id for b in site.buildings] == ["main", "health"]

    detectors = site.devices_of("mqtt")
    assert len(detectors) == 48
    assert {d.id for d in detectors} == {f"hd-main-{n:02d}" for n in range(1, 37)} | {
        f"hd-health-{n:02d}" for n in range(1, 13)
    }
    for d in detectors:
        assert d.kind == "heat_detector"
        assert d.topic == f"furong/fire/heat/{d.id}"
        assert d.broker == "site"
        assert d.heartbeat_s == 30
        assert d.install_date == date(2016, 8, 1)
        expected_building = "main" if d.id.startswith("hd-main") else "health"
        assert site.building_of_zone(d.zone).id == expected_building
        if d.zone.endswith("canteen"):
            assert d.detector_class == "BS"
    classes = [d.detector_class for d in detectors]
    assert classes.count("A1R") > len(classes) / 2
    assert {"A2S", "BS"} <= set(classes)

    placeholders = [d for d in site.devices if not d.enabled]
    # detectors, lifts, the fire panel, gates, meters, a relay module, the outdoor sensor
    assert len(site.devices) - len(placeholders) == 48 + 12 + 1 + 4 + 29 + 1
    cameras = site.devices_of("rtsp", include_disabled=True)
    assert len(cameras) == 100
    assert len({c.address for c in cameras}) == 100
    lifts = [d for d in site.devices_of("modbus", include_disabled=True) if d.kind == "elevator"]
    assert len(lifts) == 12
    assert sorted(site.building_of_zone(d.zone).id for d in lifts) == ["health"] * 4 + ["main"] * 8
    assert {d.vendor for d in lifts} == {"sanling", "otis", "jianghong"}
    assert all(d.lift is not None and d.lift.firm == d.vendor and d.commands is None
               for d in lifts)
    assert set(site.rules.elevator.firms) == {"sanling", "otis", "jianghong"}
    [panel] = [d for d in site.devices_of("modbus") if d.kind == "fire_panel"]
    assert panel.panel is not None
    assert {p.zone for p in panel.panel.points} == {z.id for b in site.buildings
                                                   for z in b.zones}
    meters = [d.kind for d in site.devices_of("modbus")]
    assert (meters.count("energy_meter"), meters.count("water_meter"),
            meters.count("gas_meter")) == (15, 10, 3)
    assert [m.id for m in site.energy.measures] == ["led-lighting", "ac-pumps", "water-mains"]
    gates = site.devices_of("http_push", include_disabled=True)
    assert [g.vendor for g in gates] == ["vzenith"] * 2 + ["hikvision"] * 2
    assert all(g.enabled and g.commands is not None for g in gates)

    assert site.brokers["site"].password is None  # the demo runs with no secret set
    assert [(t.kind, t.id) for t in site.forwarding] == [("mqtt", "desk")]
    assert check_config(SITE, environ={}) == []


def test_site_secure_yaml_is_the_same_site_with_a_password() -> None:
    plain, secure = load_site(SITE), load_site(SECURE_SITE)
    assert secure.model_dump(exclude={"brokers"}) == plain.model_dump(exclude={"brokers"})
    broker = secure.brokers["site"]
    assert (broker.username, broker.password) == (
        "gateway",
        SecretRef(env="GATEWAY_BROKER_PASSWORD"),
    )
    assert check_config(SECURE_SITE, environ={"GATEWAY_BROKER_PASSWORD": "pw"}) == []

    text = SECURE_SITE.read_text(encoding="utf-8").splitlines()
    line = next(n for n, t in enumerate(text, 1) if t.strip().startswith("password:"))
    [issue] = check_config(SECURE_SITE, environ={})
    assert str(issue) == (
        f"{SECURE_SITE}:{line} brokers.site.password: secret GATEWAY_BROKER_PASSWORD is not set"
    )


def test_main_check_config_prints_a_summary_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main_check_config(str(SITE)) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    summary = ": ok: site furong, 2 buildings, 13 zones, 195 devices (95 enabled)"
    assert summary in out[0]


def test_main_check_config_prints_each_issue_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = CASES / "cross-references" / "site.yaml"
    assert main_check_config(str(path)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [str(i) for i in check_config(path)]
    assert len(out) == 4


# --- models and helpers ------------------------------------------------------------------------


def test_site_helpers_and_defaults(tmp_path: Path) -> None:
    site = load_site(_write(tmp_path, MINIMAL))
    assert site.zone("main-canteen").test_mode is True
    assert site.zone("main-office-a").test_mode is False
    assert site.building_of_zone("main-canteen").id == "main"
    with pytest.raises(KeyError):
        site.zone("nowhere")
    with pytest.raises(KeyError):
        site.building_of_zone("nowhere")
    assert [d.id for d in site.devices_of("mqtt")] == ["hd-main-01"]
    assert [d.id for d in site.devices_of("mqtt", include_disabled=True)] == [
        "hd-main-01",
        "hd-main-02",
    ]
    assert site.devices_of("rtsp") == []
    detector = site.devices_of("mqtt")[0]
    assert (detector.detector_class, detector.rate_of_rise, detector.profile) == (
        "A1R",
        True,
        "heat-detector",
    )
    assert site.site.timezone == "Asia/Shanghai"
    assert site.gateway.topic_prefix == "furong/gw1"
    assert (site.gateway.http.host, site.gateway.http.port) == ("127.0.0.1", 8080)
    assert site.brokers["site"].keepalive_s == 12
    assert site.retention.alerts_days == 730
    assert site.retention.outbox_max_rows == 1_000_000
    http = site.gateway.http
    assert (http.allow_remote, http.max_connections, http.max_feed_clients) == (False, 256, 64)
    assert (http.keepalive_s, http.header_timeout_s) == (15.0, 5.0)
    assert site.rules.fire.static_threshold("A1R") == 56.0


@pytest.mark.parametrize(
    ("host", "allow_remote", "refused"),
    [
        ("127.0.0.1", False, False),
        ("127.0.0.53", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),  # noqa: S104  # the very case refused
        ("::", False, True),
        ("10.20.0.5", False, True),
        ("gateway.furong.local", False, True),
        ("0.0.0.0", True, False),  # noqa: S104
        ("10.20.0.5", True, False),
    ],
)
def test_a_non_loopback_http_host_must_be_allowed_explicitly(
    tmp_path: Path, host: str, allow_remote: bool, refused: bool
) -> None:
    allow = str(allow_remote).lower()
    text = MINIMAL + f"gateway:\n  http: {{host: '{host}', allow_remote: {allow}}}\n"
    issues = check_config(_write(tmp_path, text), environ={})
    if refused:
        [issue] = issues
        assert (issue.line, issue.key) == (16, "gateway.http.host")
        assert "allow_remote: true" in issue.message
    else:
        assert issues == []


def test_feed_clients_must_leave_room_for_health_checks(tmp_path: Path) -> None:
    text = MINIMAL + "gateway:\n  http:\n    max_connections: 16\n    max_feed_clients: 16\n"
    [issue] = check_config(_write(tmp_path, text), environ={})
    assert (issue.line, issue.key) == (18, "gateway.http.max_feed_clients")


def test_models_are_frozen(tmp_path: Path) -> None:
    site = load_site(_write(tmp_path, MINIMAL))
    with pytest.raises(ValidationError):
        site.site.id = "other"  # type: ignore[misc]


def test_cross_checks_also_hold_without_the_loader() -> None:
    device = {
        "driver": "mqtt",
        "id": "hd-1",
        "kind": "heat_detector",
        "zone": "z",
        "broker": "b",
        "topic": "t/1",
    }
    data = {
        "site": {"id": "s", "name": "s"},
        "brokers": {"b": {"host": "h"}},
        "buildings": [{"id": "b", "name": "b", "zones": [{"id": "z", "name": "z"}]}],
        "devices": [device, {**device, "topic": "t/2"}],
    }
    with pytest.raises(ValidationError, match=r"devices\[1\]\.id: duplicate device id 'hd-1' "):
        Site.model_validate(data)


@pytest.mark.parametrize(
    ("address", "endpoint", "link"),
    [
        (
            "tcp://198.51.100.11:502/1",
            ModbusEndpoint("tcp", 1, host="198.51.100.11"),
            "tcp://198.51.100.11:502",
        ),
        ("tcp://meter-gw/247", ModbusEndpoint("tcp", 247, host="meter-gw"), "tcp://meter-gw:502"),
        (
            "tcp://[2001:db8::1]:1502/3",
            ModbusEndpoint("tcp", 3, host="2001:db8::1", port=1502),
            "tcp://[2001:db8::1]:1502",
        ),
        (
            "rtu:///dev/ttyUSB0?baud=9600&unit=1",
            ModbusEndpoint("rtu", 1, serial_port="/dev/ttyUSB0"),
            "rtu:///dev/ttyUSB0",
        ),
        (
            "rtu:///dev/ttyS1?unit=12&baud=19200&parity=E&stopbits=2",
            ModbusEndpoint("rtu", 12, serial_port="/dev/ttyS1", baud=19200, parity="E", stopbits=2),
            "rtu:///dev/ttyS1",
        ),
        (
            "rtu:///dev/ttyUSB0?unit=5",
            ModbusEndpoint("rtu", 5, serial_port="/dev/ttyUSB0"),
            "rtu:///dev/ttyUSB0",
        ),
    ],
)
def test_modbus_address_parses(address: str, endpoint: ModbusEndpoint, link: str) -> None:
    assert parse_modbus_address(address) == endpoint
    assert endpoint.link == link


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("tcp://198.51.100.11:502/0", "unit must be a number 1-247"),
        ("tcp://198.51.100.11:502/248", "unit must be a number 1-247"),
        ("tcp://198.51.100.11:502/", "unit must be a number 1-247"),
        ("tcp://198.51.100.11:502/1/2", "unit must be a number 1-247"),
        ("tcp://198.51.100.11:502/-1", "unit must be a number 1-247"),
        ("tcp://198.51.100.11:502/²", "unit must be a number 1-247"),
        ("tcp://198.51.100.11:0/1", "port must be 1-65535"),
        ("tcp://198.51.100.11:70000/1", "port must be 1-65535"),
        ("tcp://198.51.100.11:x/1", "port must be 1-65535"),
        ("tcp:///1", "tcp://host:port/unit"),
        ("tcp://h/1?unit=2", "tcp://host:port/unit"),
        ("tcp://u:p@h/1", "no user name or password"),
        ("rtu://host/dev/ttyUSB0?unit=1", "rtu:///dev/ttyX"),
        ("rtu:///tmp/tty?unit=1", "rtu:///dev/ttyX"),
        ("rtu:///dev/ttyUSB0?baud=9600", "needs unit=N"),
        ("rtu:///dev/ttyUSB0?unit=1&unit=2", "given twice"),
        ("rtu:///dev/ttyUSB0?unit=1&speed=9600", "unknown Modbus RTU option 'speed'"),
        ("rtu:///dev/ttyUSB0?unit=1&baud=9601", "baud must be one of"),
        ("rtu:///dev/ttyUSB0?unit=1&parity=X", "parity must be N, E or O"),
        ("rtu:///dev/ttyUSB0?unit=1&stopbits=3", "stopbits must be 1 or 2"),
        ("modbus://h/1", "a Modbus address is"),
        ("198.51.100.11:502", "a Modbus address is"),
    ],
)
def test_modbus_address_refuses(address: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_modbus_address(address)


@pytest.mark.parametrize(
    ("topic", "ok"),
    [
        ("furong/fire/heat/hd-main-01", True),
        ("a", True),
        ("", False),
        ("furong/+/heat", False),
        ("furong/#", False),
        ("/furong/fire", False),
        ("furong/fire/", False),
        ("furong//fire", False),
        ("$SYS/broker", False),
        ("furong/\x00", False),
    ],
)
def test_topic(topic: str, ok: bool) -> None:
    adapter: TypeAdapter[str] = TypeAdapter(Topic)
    if ok:
        assert adapter.validate_python(topic) == topic
    else:
        with pytest.raises(ValidationError):
            adapter.validate_python(topic)


@pytest.mark.parametrize(
    ("given", "ok"),
    [
        ({"A1": 54.0}, True),
        ({"A1": 65.0}, True),
        ({"A1": 53.9}, False),
        ({"A1": 65.1}, False),
        ({"A2": 70.0}, True),
        ({"A2": 70.5}, False),
        ({"B": 69.0}, True),
        ({"B": 68.9}, False),
        ({"B": 85.0}, True),
        ({"C": 84.0}, True),
        ({"C": 100.0}, True),
        ({"C": 100.5}, False),
        ({"A1R": 56.0}, False),  # thresholds belong to the class, not its suffix
    ],
)
def test_static_threshold_must_lie_in_its_en54_5_band(given: dict[str, float], ok: bool) -> None:
    if ok:
        rules = FireRulesConfig(static_threshold_c=given)
        [(klass, value)] = given.items()
        assert rules.static_threshold_c[klass] == value
    else:
        with pytest.raises(ValidationError, match=r"outside the EN 54-5|unknown heat detector"):
            FireRulesConfig(static_threshold_c=given)


def test_classes_left_out_keep_their_default_threshold() -> None:
    rules = FireRulesConfig(static_threshold_c={"B": 80.0})
    assert rules.static_threshold_c == {"A1": 56.0, "A2": 60.0, "B": 80.0, "C": 90.0}
    assert [rules.static_threshold(c) for c in ("A1R", "A2S", "BS", "BR", "C")] == [
        56.0,
        60.0,
        80.0,
        80.0,
        90.0,
    ]


# --- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ({"env": "GATEWAY_BROKER_PASSWORD"}, True),
        ({"file": "/etc/furong/broker-password"}, True),
        ({"credential": "broker-password"}, True),
        ({}, False),
        ({"env": "A", "file": "/b"}, False),
        ({"env": "NOT-A-NAME"}, False),
        ({"credential": "../escape"}, False),
        ({"file": ""}, False),
        ({"vault": "x"}, False),
        ("hunter2", False),
        (20160801, False),
    ],
)
def test_secret_reference_forms(ref: object, ok: bool) -> None:
    if ok:
        assert SecretRef.model_validate(ref)
    else:
        with pytest.raises(ValidationError) as caught:
            SecretRef.model_validate(ref)
        if not isinstance(ref, dict):
            assert "secrets come from env/file/credential" in str(caught.value)
            assert str(ref) not in str(caught.value)


def test_resolve_secret_from_env() -> None:
    ref = SecretRef(env="GATEWAY_BROKER_PASSWORD")
    assert resolve_secret(ref, {"GATEWAY_BROKER_PASSWORD": "pw-1"}) == "pw-1"
    with pytest.raises(ConfigError, match=r"^secret GATEWAY_BROKER_PASSWORD is not set$"):
        resolve_secret(ref, {})
    with pytest.raises(ConfigError, match=r"^secret GATEWAY_BROKER_PASSWORD is empty$"):
        resolve_secret(ref, {"GATEWAY_BROKER_PASSWORD": ""})


@pytest.mark.parametrize(
    ("content", "value"),
    [(b"pw-2\n", "pw-2"), (b"pw-2\r\n", "pw-2"), (b"pw-2", "pw-2"), (b" pw 2 \n", " pw 2 ")],
)
def test_resolve_secret_from_file(tmp_path: Path, content: bytes, value: str) -> None:
    (tmp_path / "broker-password").write_bytes(content)
    ref = SecretRef(file=str(tmp_path / "broker-password"))
    assert resolve_secret(ref, {}) == value


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot be read"), (b"\n", "is empty"), (b"\xffpw-3\xfe", "is not UTF-8 text")],
)
def test_resolve_secret_file_errors_name_the_file_never_the_value(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "broker-password"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        resolve_secret(SecretRef(file=str(path)), {})
    text = str(caught.value)
    assert text.startswith(f"secret file {path} ")
    assert message in text
    assert "pw-3" not in text
    assert "ff" not in text.removeprefix(f"secret file {path}")


def test_resolve_secret_from_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "broker-password").write_text("pw-4\n")
    ref = SecretRef(credential="broker-password")
    assert resolve_secret(ref, {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "pw-4"
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        resolve_secret(ref, {})
    with pytest.raises(ConfigError, match="secret credential other cannot be read"):
        resolve_secret(SecretRef(credential="other"), {"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_check_config_resolves_secrets_from_the_given_environment(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("tok\n")
    path = _write(
        tmp_path,
        MINIMAL.replace(
            "  site: {host: 127.0.0.1}",
            "  site: {host: 127.0.0.1, username: gw, password: {env: PW}}",
        )
        + "forwarding:\n"
        f"  - {{kind: webhook, id: city, url: 'https://h/a', token: {{file: {token}}}}}\n",
    )
    assert check_config(path, environ={"PW": "x"}) == []
    assert [(i.line, i.key) for i in check_config(path, environ={})] == [
        (3, "brokers.site.password")
    ]


def test_secret_wrapper_never_prints_its_value() -> None:
    secret = Secret("pw-5")
    assert repr(secret) == str(secret) == f"{secret}" == "***"
    assert "pw-5" not in repr([secret])
    assert secret.reveal() == "pw-5"
    assert secret == Secret("pw-5")
    assert secret != Secret("other")
