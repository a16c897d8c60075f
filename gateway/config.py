"""The site file: pydantic models of the compound, and a loader that points at lines.

`load_site` reports every problem as `file:line key: message`; `check_config` also proves
that every secret the file refers to can be resolved.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, overload

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

# Each driver's device model lives in its driver's folder; re-exported here so the Device
# union and its callers keep one import path.
from drivers.http_push.config import HttpPushDevice as HttpPushDevice
from drivers.modbus.config import ModbusDevice as ModbusDevice
from drivers.modbus.config import ModbusEndpoint as ModbusEndpoint
from drivers.modbus.config import parse_modbus_address as parse_modbus_address
from drivers.mqtt.config import DetectorClass as DetectorClass
from drivers.mqtt.config import MqttDevice as MqttDevice
from drivers.mqtt.config import MqttGateDevice as MqttGateDevice
from drivers.rtsp.config import CameraDevice as CameraDevice
from drivers.rtsp.config import CameraRulesConfig
from gateway.config_parts import CommandAllow as CommandAllow
from gateway.config_parts import CommandRate as CommandRate
from gateway.config_parts import CommandValue as CommandValue
from gateway.config_parts import DeviceCommands as DeviceCommands
from gateway.config_parts import (
    Found,
    Loc,
    Model,
    Name,
    Text,
    Topic,
    check_http,
    check_timezone,
    dotted,
    located,
)
from gateway.config_parts import SecretRef as SecretRef
from gateway.config_parts import TlsConfig as TlsConfig
from gateway.energy_config import EnergyConfig, WaterRulesConfig
from gateway.errors import ConfigError
from gateway.lift_settings import ElevatorRulesConfig, lift_references
from gateway.secrets import resolve_secret
from gateway.vehicles.config import GatesConfig

# --- the site -------------------------------------------------------------------------------


class SiteInfo(Model):
    id: Name
    name: Text
    timezone: Annotated[str, AfterValidator(check_timezone)] = "Asia/Shanghai"


class Zone(Model):
    id: Name
    name: Text
    # Drills and linkage tests: everything is recorded, alerts are marked drill and stay inside.
    test_mode: bool = False
    # Independent triggers that confirm a fire here (`fire.confirmed`): 2 where linkage
    # starts equipment (GB 50116 §4.1.6: two detectors, or a detector and a manual call
    # point), else 1. A site with no fire panel and no zone saying this has no fire model.
    fire_triggers: int | None = Field(default=None, ge=1, le=2)


class Building(Model):
    id: Name
    name: Text
    zones: list[Zone] = Field(min_length=1)


class BrokerConfig(Model):
    host: Text
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretRef | None = None
    # 10-15 s finds a dead link fast without flooding the broker (ARCHITECTURE: delivery).
    keepalive_s: int = Field(default=12, ge=5, le=120)
    # Without a PUBACK in this time the link is taken as dead and dropped.
    publish_timeout_s: float = Field(default=5.0, gt=0, le=60)
    client_id: str | None = None
    tls: TlsConfig | None = None

    @model_validator(mode="after")
    def _password_needs_username(self) -> BrokerConfig:
        if self.password is not None and self.username is None:
            # MQTT 3.1.1 sends a password only together with a user name.
            raise located([(("password",), "a password needs a username", None)])
        return self


def is_loopback(host: str) -> bool:
    """Only loopback is private to this machine; a name could resolve to anything else."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpConfig(Model):
    host: Text = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Nothing on the API asks for credentials: binding beyond loopback must be meant.
    allow_remote: bool = False
    # Open connections at most; past it the longest-idle one is closed for the newcomer.
    # 256 is far above one desk, Prometheus and a few engineers, far below the fd limit.
    max_connections: int = Field(default=256, ge=8, le=10_000)
    # Live feeds (SSE) at most, within max_connections: the rest stays for /healthz.
    max_feed_clients: int = Field(default=64, ge=1, le=10_000)
    # Idle keep-alive connections are closed after this long.
    keepalive_s: float = Field(default=15.0, gt=0, le=600)
    # A connection must deliver a request's headers within this long, or it is closed.
    header_timeout_s: float = Field(default=5.0, gt=0, le=120)

    @model_validator(mode="after")
    def _bounds(self) -> HttpConfig:
        found: list[Found] = []
        if not is_loopback(self.host) and not self.allow_remote:
            found.append((("host",), f"{self.host} is not a loopback address and the API has"
                          " no authentication: set allow_remote: true to mean it", None))
        if self.max_feed_clients >= self.max_connections:
            found.append((("max_feed_clients",), "must be below max_connections, which"
                          " must leave room for /healthz and /metrics", None))
        if found:
            raise located(found)
        return self


class GatewayConfig(Model):
    data_dir: Text = "data"
    http: HttpConfig = Field(default_factory=HttpConfig)
    topic_prefix: Topic = "furong/gw1"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class RetentionConfig(Model):
    events_days: int = Field(default=90, ge=1)
    readings_days: int = Field(default=400, ge=1)
    alerts_days: int = Field(default=730, ge=1)
    max_db_mb: int = Field(default=4096, ge=16)
    # Past this many outbox rows the oldest state rows are dropped; alarms never are.
    outbox_max_rows: int = Field(default=1_000_000, ge=1000)
    # Alarm snapshots (JPEG files under the data directory) are kept this long.
    snapshots_days: float = Field(default=30, gt=0, le=3650)


# EN 54-5 (= GB 4716) static response ranges per class, degrees C.
EN54_5_BANDS: dict[str, tuple[float, float]] = {
    "A1": (54.0, 65.0),
    "A2": (54.0, 70.0),
    "B": (69.0, 85.0),
    "C": (84.0, 100.0),
}
DEFAULT_STATIC_THRESHOLDS: dict[str, float] = {"A1": 56.0, "A2": 60.0, "B": 75.0, "C": 90.0}


class FireRulesConfig(Model):
    # Classes left out keep their default; each given one must lie inside its EN 54-5 band.
    static_threshold_c: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_STATIC_THRESHOLDS)
    )
    ror_rise_k_per_min: float = Field(default=4.0, gt=0, le=60)
    # The alarm threshold once the rate of rise is exceeded (class R detectors only).
    ror_threshold_c: float = Field(default=46.0, gt=0, le=100)
    ror_window_s: float = Field(default=60.0, ge=10, le=600)
    # EWMA weight on temperature, per second since the previous reading: raw readings are
    # too noisy for a rate of rise, and a slow reporter must not lag its own history.
    smoothing_alpha: float = Field(default=0.3, gt=0, le=1)
    clear_hysteresis_k: float = Field(default=3.0, ge=0, le=20)
    low_battery_pct: int = Field(default=20, ge=0, le=100)
    # Below 1.5 heartbeats a merely late detector would flap between stale and alive.
    silence_factor: float = Field(default=3.0, ge=1.5, le=100)

    @field_validator("static_threshold_c")
    @classmethod
    def _inside_class_band(cls, value: dict[str, float]) -> dict[str, float]:
        found: list[Found] = []
        for klass, threshold in value.items():
            band = EN54_5_BANDS.get(klass)
            if band is None:
                found.append(((klass,), "unknown heat detector class (A1, A2, B or C)", None))
            elif not band[0] <= threshold <= band[1]:
                found.append(
                    (
                        (klass,),
                        f"{threshold:g} °C is outside the EN 54-5 class {klass} band "
                        f"{band[0]:g}-{band[1]:g} °C",
                        None,
                    )
                )
        if found:
            raise located(found)
        return {**DEFAULT_STATIC_THRESHOLDS, **value}

    def static_threshold(self, detector_class: str) -> float:
        """The static alarm threshold for a detector class such as "A1R" or "BS"."""
        return self.static_threshold_c[detector_class.rstrip("RS")]


class RulesConfig(Model):
    fire: FireRulesConfig = Field(default_factory=FireRulesConfig)
    elevator: ElevatorRulesConfig = Field(default_factory=ElevatorRulesConfig)
    water: WaterRulesConfig = Field(default_factory=WaterRulesConfig)
    cameras: CameraRulesConfig = Field(default_factory=CameraRulesConfig)


Device = Annotated[
    MqttDevice | ModbusDevice | HttpPushDevice | CameraDevice | MqttGateDevice,
    Field(discriminator="driver"),
]


class MqttTarget(Model):
    kind: Literal["mqtt"]
    id: Name
    broker: str
    topic_prefix: Topic | None = None  # None: the gateway's own topic_prefix


class WebhookTarget(Model):
    kind: Literal["webhook"]
    id: Name
    url: Annotated[str, AfterValidator(check_http)]
    token: SecretRef | None = None  # sent as "Authorization: Bearer <token>"
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    # Drills stay inside the compound: a zone in test mode does not call the outside world.
    send_drills: bool = False
    tls: TlsConfig | None = None  # for https:// targets with a private CA or client certs


Target = Annotated[MqttTarget | WebhookTarget, Field(discriminator="kind")]


class Site(Model):
    site: SiteInfo
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    brokers: dict[Name, BrokerConfig] = Field(default_factory=dict)
    buildings: list[Building] = Field(min_length=1)
    devices: list[Device] = Field(default_factory=list)
    forwarding: list[Target] = Field(default_factory=list)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    energy: EnergyConfig = Field(default_factory=EnergyConfig)

    @model_validator(mode="after")
    def _cross_references(self) -> Site:
        found: list[Found] = []

        def unique(seen: dict[object, Loc], value: object, loc: Loc, what: str) -> None:
            if value in seen:
                found.append((loc, f"duplicate {what}", seen[value]))
            else:
                seen[value] = loc

        buildings: dict[object, Loc] = {}
        zones: dict[object, Loc] = {}
        for b, building in enumerate(self.buildings):
            unique(buildings, building.id, ("buildings", b, "id"), f"building id {building.id!r}")
            for z, zone in enumerate(building.zones):
                loc: Loc = ("buildings", b, "zones", z, "id")
                unique(zones, zone.id, loc, f"zone id {zone.id!r}")

        ids: dict[object, Loc] = {}
        topics: dict[object, Loc] = {}
        addresses: dict[object, Loc] = {}
        serial_lines: dict[str, tuple[ModbusEndpoint, Loc]] = {}
        for d, device in enumerate(self.devices):
            at: Loc = ("devices", d)
            unique(ids, device.id, (*at, "id"), f"device id {device.id!r}")
            if device.zone not in zones:
                found.append(((*at, "zone"), f"zone {device.zone!r} is not in buildings", None))
            if isinstance(device, MqttGateDevice):
                if device.broker not in self.brokers:
                    found.append(
                        ((*at, "broker"), f"broker {device.broker!r} is not in brokers", None)
                    )
                if device.area is not None and device.area not in zones:
                    found.append(((*at, "area"), f"zone {device.area!r} is not in buildings",
                                  None))
                unique(topics, (device.broker, device.topic), (*at, "topic"),
                       f"topic {device.topic!r}")
            if isinstance(device, MqttDevice):
                if device.broker not in self.brokers:
                    found.append(
                        ((*at, "broker"), f"broker {device.broker!r} is not in brokers", None)
                    )
                topic = (device.broker, device.topic)
                unique(topics, topic, (*at, "topic"), f"topic {device.topic!r}")
            elif isinstance(device, ModbusDevice):
                end = device.endpoint
                unit = f"Modbus unit {end.unit} on {end.link}"
                unique(addresses, (end.link, end.unit), (*at, "address"), unit)
                if end.transport == "rtu":
                    # One RS-485 line has one speed and framing; a second one garbles both.
                    first_end, first_at = serial_lines.setdefault(end.link, (end, (*at, "address")))
                    framing = (end.baud, end.parity, end.stopbits)
                    if framing != (first_end.baud, first_end.parity, first_end.stopbits):
                        found.append(
                            (
                                (*at, "address"),
                                f"{end.serial_port} is already used at {first_end.baud} baud "
                                f"{first_end.parity}{first_end.stopbits}",
                                first_at,
                            )
                        )
            elif isinstance(device, HttpPushDevice):
                gate = f"gate address {device.address}"
                unique(addresses, device.address, (*at, "address"), gate)
                if device.area is not None and device.area not in zones:
                    found.append(((*at, "area"), f"zone {device.area!r} is not in buildings",
                                  None))

        targets: dict[object, Loc] = {}
        for t, target in enumerate(self.forwarding):
            unique(targets, target.id, ("forwarding", t, "id"), f"target id {target.id!r}")
            if isinstance(target, MqttTarget) and target.broker not in self.brokers:
                missing = f"broker {target.broker!r} is not in brokers"
                found.append((("forwarding", t, "broker"), missing, None))
        found += lift_references(self)
        for m, measure in enumerate(self.energy.measures):
            for i, meter in enumerate(measure.meters):
                if meter not in ids:
                    found.append((("energy", "measures", m, "meters", i),
                                  f"meter {meter!r} is not in devices", None))
        if found:
            raise located(found)
        return self

    def zone(self, zone_id: str) -> Zone:
        for building in self.buildings:
            for zone in building.zones:
                if zone.id == zone_id:
                    return zone
        raise KeyError(zone_id)

    def building_of_zone(self, zone_id: str) -> Building:
        for building in self.buildings:
            if any(zone.id == zone_id for zone in building.zones):
                return building
        raise KeyError(zone_id)

    @overload
    def devices_of(
        self, driver: Literal["mqtt"], *, include_disabled: bool = False
    ) -> list[MqttDevice]: ...
    @overload
    def devices_of(
        self, driver: Literal["modbus"], *, include_disabled: bool = False
    ) -> list[ModbusDevice]: ...
    @overload
    def devices_of(
        self, driver: Literal["http_push"], *, include_disabled: bool = False
    ) -> list[HttpPushDevice]: ...
    @overload
    def devices_of(
        self, driver: Literal["rtsp"], *, include_disabled: bool = False
    ) -> list[CameraDevice]: ...
    def devices_of(
        self, driver: str, *, include_disabled: bool = False
    ) -> list[MqttDevice] | list[ModbusDevice] | list[HttpPushDevice] | list[CameraDevice]:
        """The devices one driver runs; disabled placeholders only when asked for."""
        return [  # type: ignore[return-value]  # the discriminator fixes the member type
            d for d in self.devices if d.driver == driver and (d.enabled or include_disabled)
        ]


# --- loading and reporting ------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int  # 1-based; 0 when the file itself could not be read
    key: str  # dotted path, e.g. devices[3].address
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.key}: {self.message}"


class SiteFileError(ConfigError):
    """The site file is invalid; `errors` holds every issue found, in file order."""

    def __init__(self, errors: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(issue) for issue in errors))
        self.errors = errors


def load_site(path: str | Path) -> Site:
    """The validated site; raises SiteFileError (a ConfigError) listing every issue."""
    site, issues, _ = _load(Path(path))
    if site is None:
        raise SiteFileError(issues)
    return site


def check_config(
    path: str | Path, *, environ: Mapping[str, str] | None = None
) -> list[ConfigIssue]:
    """Every issue of the site file, including secret references that do not resolve."""
    return _check(Path(path), environ)[1]


def main_check_config(path: str) -> int:
    """`compound-gateway check-config FILE`: one issue per line and 1, or a summary and 0."""
    site, issues = _check(Path(path), None)
    for issue in issues:
        print(issue)
    if site is None or issues:
        return 1
    zones = sum(len(b.zones) for b in site.buildings)
    enabled = sum(1 for d in site.devices if d.enabled)
    print(
        f"{path}: ok: site {site.site.id}, {len(site.buildings)} buildings, {zones} zones, "
        f"{len(site.devices)} devices ({enabled} enabled), brokers: {len(site.brokers)}, "
        f"forwarding targets: {len(site.forwarding)}"
    )
    return 0


def _check(path: Path, environ: Mapping[str, str] | None) -> tuple[Site | None, list[ConfigIssue]]:
    site, issues, lines = _load(path)
    if site is None:
        return None, issues
    env = os.environ if environ is None else environ
    for loc, ref in _secret_refs(site):
        try:
            resolve_secret(ref, env)
        except ConfigError as exc:
            issues.append(_issue(str(path), lines, loc, str(exc)))
    for loc, name, file in _tls_files(site):
        if not os.access(file, os.R_OK):
            issues.append(_issue(str(path), lines, (*loc, name), f"cannot read {file}"))
    issues += _driver_issues(path, site, lines)
    issues += _profile_issues(path, site, lines)
    issues += _temperature_issues(path, site, lines)
    issues.sort(key=lambda issue: issue.line)
    return site, issues


def _temperature_issues(path: Path, site: Site, lines: dict[Loc, int]) -> list[ConfigIssue]:
    """A savings measure's temperature file (beside the site file) reads as daily means."""
    from gateway.savings_report import SavingsError, read_temperatures

    found: list[ConfigIssue] = []
    ids = {device.id for device in site.devices}
    for m, measure in enumerate(site.energy.measures):
        sensor = measure.degree_days.sensor if measure.degree_days is not None else None
        if sensor is not None and sensor.source not in ids:
            at: Loc = ("energy", "measures", m, "degree_days", "sensor", "source")
            found.append(_issue(str(path), lines, at, f"no device {sensor.source!r} in the "
                                "site file for the degree-days' temperatures"))
        if measure.degree_days is not None and measure.degree_days.temperature_csv:
            name = measure.degree_days.temperature_csv
            file = path.parent / name
            try:
                read_temperatures(file)
            except SavingsError as exc:
                loc: Loc = ("energy", "measures", m, "degree_days", "temperature_csv")
                why = str(exc).replace(str(file), name)
                found.append(_issue(str(path), lines, loc, why))
    return found


def _driver_issues(path: Path, site: Site, lines: dict[Loc, int]) -> list[ConfigIssue]:
    """Every enabled device's driver is in this build, with its protocol stack."""
    from drivers.catalog import not_installed

    found: list[ConfigIssue] = []
    for d, device in enumerate(site.devices):
        if device.enabled:
            reason = not_installed(device.driver)
            if reason is not None:
                found.append(_issue(str(path), lines, ("devices", d, "driver"), reason))
    return found


def _profile_issues(path: Path, site: Site, lines: dict[Loc, int]) -> list[ConfigIssue]:
    """Every enabled device's profile exists beside the file (profiles/) and is sound,
    checked by its driver's typed model."""
    from drivers.modbus.commands import command_issues
    from drivers.modbus.profile import ProfileError as ModbusProfileError
    from drivers.modbus.profile import load_profile as load_modbus_profile
    from drivers.modbus.status_config import status_issues
    from drivers.mqtt.profile import ProfileError as MqttProfileError
    from drivers.mqtt.profile import read_profile as read_mqtt_profile

    folder = path.parent / "profiles"
    found: list[ConfigIssue] = []
    for d, device in enumerate(site.devices):
        if not isinstance(device, ModbusDevice | MqttDevice) or not device.enabled:
            continue
        loc: Loc = ("devices", d, "profile")
        profile = folder / f"{device.profile}.yaml"
        if not profile.is_file():
            known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
            found.append(_issue(str(path), lines, loc,
                                f"unknown profile {device.profile!r} (known: {known})"))
            continue
        try:
            if isinstance(device, ModbusDevice):
                loaded = load_modbus_profile(profile)
                for i, why in command_issues(device, loaded):
                    found.append(_issue(str(path), lines,
                                        ("devices", d, "commands", "allow", i, "action"), why))
                for sub, why in status_issues(device, loaded):
                    found.append(_issue(str(path), lines, ("devices", d, *sub), why))
            else:
                read_mqtt_profile(profile)
        except (ModbusProfileError, MqttProfileError) as exc:
            found.append(_issue(str(path), lines, loc, f"bad profile: {exc}"))
    return found


def _secret_refs(site: Site) -> Iterator[tuple[Loc, SecretRef]]:
    for name, broker in site.brokers.items():
        if broker.password is not None:
            yield ("brokers", name, "password"), broker.password
    for t, target in enumerate(site.forwarding):
        if isinstance(target, WebhookTarget) and target.token is not None:
            yield ("forwarding", t, "token"), target.token
    for d, device in enumerate(site.devices):
        if isinstance(device, CameraDevice) and device.enabled and device.password is not None:
            yield ("devices", d, "password"), device.password
        if isinstance(device, HttpPushDevice) and device.enabled and device.secret is not None:
            yield ("devices", d, "secret"), device.secret
    if site.gates.pseudonymise and site.gates.pseudonym_key is not None:
        yield ("gates", "pseudonym_key"), site.gates.pseudonym_key


def _tls_files(site: Site) -> Iterator[tuple[Loc, str, str]]:
    for name, broker in site.brokers.items():
        if broker.tls is not None:
            for field_name, file in broker.tls.files():
                yield ("brokers", name, "tls"), field_name, file
    for t, target in enumerate(site.forwarding):
        if isinstance(target, WebhookTarget) and target.tls is not None:
            for field_name, file in target.tls.files():
                yield ("forwarding", t, "tls"), field_name, file


def _load(path: Path) -> tuple[Site | None, list[ConfigIssue], dict[Loc, int]]:
    file = str(path)
    lines: dict[Loc, int] = {(): 1}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [ConfigIssue(file, 0, "(file)", f"cannot read: {exc.strerror}")], lines
    except UnicodeDecodeError:
        return None, [ConfigIssue(file, 0, "(file)", "not UTF-8 text")], lines
    try:
        tree = YAML(typ="rt").load(text)
    except YAMLError as exc:
        return None, [_yaml_issue(file, exc)], lines
    data = _plain(tree, (), lines)
    if not isinstance(data, dict):
        what = "empty" if data is None else "not a mapping of sections"
        return None, [ConfigIssue(file, 1, "(file)", f"the site file is {what}")], lines
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        issues = list(_issues_from(file, exc, data, lines))
        issues.sort(key=lambda issue: issue.line)
        return None, issues, lines
    return site, [], lines


def _yaml_issue(file: str, exc: YAMLError) -> ConfigIssue:
    if not isinstance(exc, MarkedYAMLError):
        return ConfigIssue(file, 1, "(yaml)", f"invalid YAML: {exc}")
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = exc.problem or "invalid YAML"
    if isinstance(exc, DuplicateKeyError):
        # ruamel quotes both values; one of them may be a secret typed in by mistake.
        problem = problem.split(" with value", 1)[0]
    elif exc.context:
        problem = f"{exc.context}: {problem}"
    started = exc.context_mark
    if started is not None and exc.problem_mark is not None and started.line != mark.line:
        problem += f" (started at line {started.line + 1})"
    return ConfigIssue(file, line, "(yaml)", f"invalid YAML: {problem}")


def _plain(node: Any, loc: Loc, lines: dict[Loc, int]) -> Any:
    """ruamel's node types as plain Python values, recording the line of every key and item."""
    if isinstance(node, CommentedMap):
        if loc == ():
            lines[()] = node.lc.line + 1
        out: dict[str, Any] = {}
        for key, value in node.items():
            name = str(key)
            position = node.lc.data.get(key)
            lines[(*loc, name)] = position[0] + 1 if position else lines.get(loc, 1)
            out[name] = _plain(value, (*loc, name), lines)
        return out
    if isinstance(node, CommentedSeq):
        items: list[Any] = []
        for i, value in enumerate(node):
            position = node.lc.data.get(i)
            lines[(*loc, i)] = position[0] + 1 if position else lines.get(loc, 1)
            items.append(_plain(value, (*loc, i), lines))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _issues_from(
    file: str, exc: ValidationError, data: dict[str, Any], lines: dict[Loc, int]
) -> Iterator[ConfigIssue]:
    for error in exc.errors(include_url=False, include_input=False):
        loc = _clean_loc(error["loc"], data)
        ctx = error.get("ctx") or {}
        kind = error["type"]
        if kind == "located":
            for sub, message, first in ctx["found"]:
                if first is not None:
                    message += f" (first at line {_line(lines, (*loc, *first))})"
                yield _issue(file, lines, (*loc, *sub), message)
            continue
        message = error["msg"]
        if kind == "missing":
            message = "required key is missing"
        elif kind == "extra_forbidden":
            message = "unknown key"
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            discriminator = str(ctx.get("discriminator", "")).strip("'")
            loc = (*loc, discriminator)
            if kind == "union_tag_not_found":
                message = "required key is missing"
            else:
                expected = ctx.get("expected_tags")
                message = f"unknown {discriminator} {ctx.get('tag')!r}; expected one of {expected}"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        yield _issue(file, lines, loc, message)


def _clean_loc(loc: tuple[str | int, ...], data: Any) -> Loc:
    """Drop what pydantic adds to a location that is not in the file (union tags, [key])."""
    out: list[str | int] = []
    node: Any = data
    for part in loc:
        if isinstance(node, dict):
            if part in node:
                node = node[part]
                out.append(part)
                continue
            if part in (node.get("driver"), node.get("kind")):
                continue  # the discriminator's tag pydantic puts into the path
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            out.append(part)
            continue
        if part != "[key]":
            out.append(part)
        node = None
    return tuple(out)


def _line(lines: dict[Loc, int], loc: Loc) -> int:
    # A missing key has no line of its own: its parent mapping's line is the nearest.
    for end in range(len(loc), -1, -1):
        found = lines.get(loc[:end])
        if found is not None:
            return found
    return 1


def _issue(file: str, lines: dict[Loc, int], loc: Loc, message: str) -> ConfigIssue:
    return ConfigIssue(file, _line(lines, loc), dotted(loc) or "(file)", message)
