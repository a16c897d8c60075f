"""The heat-detector simulator: physics and payloads from tables, the wire on a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError, DeviceError
from simulators.compound import main, parse_broker, parse_fire
from simulators.heat_detectors import (
    CONTROL_TOPIC,
    MALFORMED_KINDS,
    OVERSIZE_BYTES,
    TOPIC_PREFIX,
    DetectorSim,
    FireState,
    HeatDetectorFleet,
    detector_class_parts,
    generated_fleet,
    load_fleet,
    malformed_message,
    would_alarm,
)
from tests.brokers import Mosquitto
from tests.mqtt_client import mqtt_client

T0 = 1_764_000_000.0
REPORT_FIELDS = {"seq": int, "ts": float, "temp_c": float, "alarm": bool, "battery_pct": int}


def is_report(message: object) -> bool:
    """A payload that follows the wire contract exactly."""
    if not isinstance(message, dict) or set(message) != {*REPORT_FIELDS, "fault"}:
        return False
    typed = all(type(message[k]) is t for k, t in REPORT_FIELDS.items())
    return (
        typed
        and message["seq"] >= 1
        and 0 <= message["battery_pct"] <= 100
        and (message["fault"] is None or isinstance(message["fault"], str))
    )


# ---------------------------------------------------------------- pure: alarm logic


@pytest.mark.parametrize(
    ("detector_class", "temp_c", "rise_k_per_min", "alarm"),
    [
        ("A1R", 55.9, 0.0, False),
        ("A1R", 56.0, 0.0, True),
        ("A1", 56.0, 0.0, True),
        ("A1R", 50.0, 10.0, True),  # rate of rise drops the point to 46 °C
        ("A1R", 45.9, 10.0, False),
        ("A1R", 50.0, 4.0, False),  # exactly 4 K/min is not "exceeds"
        ("A1S", 50.0, 10.0, False),  # S: static only
        ("A1", 50.0, 10.0, False),  # no suffix: static only
        ("A2S", 59.9, 0.0, False),
        ("A2S", 60.0, 0.0, True),
        ("A2R", 47.0, 5.0, True),
        ("BS", 74.9, 0.0, False),
        ("B", 75.0, 0.0, True),
        ("BR", 47.0, 5.0, True),
        ("C", 89.9, 0.0, False),
        ("CS", 90.0, 0.0, True),
    ],
)
def test_would_alarm_by_class(
    detector_class: str, temp_c: float, rise_k_per_min: float, alarm: bool
) -> None:
    assert would_alarm(detector_class, temp_c, rise_k_per_min) is alarm


@pytest.mark.parametrize("bad", ["", "D", "A1X", "A3R", "a1r", "A1RS"])
def test_unknown_detector_class_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="class"):
        detector_class_parts(bad)


# ---------------------------------------------------------------- pure: physics


def burn(detector: DetectorSim, seconds: int, start: float = T0) -> list[tuple[float, float, bool]]:
    """(t, temp, alarm) once a simulated second."""
    out = []
    for k in range(1, seconds + 1):
        detector.advance(start + k)
        out.append((start + k, detector.temp_c, detector.alarm))
    return out


def first_alarm_temp(trace: list[tuple[float, float, bool]]) -> float:
    return next(temp for _t, temp, alarm in trace if alarm)


@pytest.mark.parametrize(
    ("detector_class", "mode", "k_per_min", "trips_between"),
    [
        ("A1S", "static", 30.0, (56.0, 56.6)),
        ("A2S", "static", 30.0, (60.0, 60.6)),
        ("BS", "static", 30.0, (75.0, 75.6)),
        # 0.5 K/s is 30 K/min: a class R detector trips on rate of rise, as a real one would.
        ("A1R", "static", 30.0, (46.0, 46.6)),
        ("A1R", "fast", 10.0, (46.0, 46.3)),
        ("A1S", "fast", 10.0, (56.0, 56.3)),
    ],
)
def test_fire_climbs_and_trips_where_the_class_says(
    detector_class: str, mode: str, k_per_min: float, trips_between: tuple[float, float]
) -> None:
    detector = DetectorSim("hd-main-03", detector_class=detector_class, seed=7)
    detector.advance(T0)
    detector.ignite(mode, T0)
    trace = burn(detector, 600)
    rise = (trace[29][1] - trace[9][1]) / 20 * 60
    assert rise == pytest.approx(k_per_min, rel=0.05)
    low, high = trips_between
    assert low <= first_alarm_temp(trace) <= high
    assert trace[-1][2] is True
    assert detector.period_s() == 1.0


def test_fire_levels_off_past_the_static_point() -> None:
    for detector_class, plateau in [("A1R", 70.0), ("A2S", 70.0), ("BS", 85.0), ("CS", 100.0)]:
        detector = DetectorSim("hd-main-01", detector_class=detector_class)
        detector.advance(T0)
        detector.ignite("static", T0)
        detector.advance(T0 + 900)
        assert detector.temp_c == pytest.approx(plateau)
        assert detector.alarm


def test_extinguished_fire_cools_clears_and_goes_quiet() -> None:
    detector = DetectorSim("hd-main-05", detector_class="A1S", heartbeat_s=30.0, seed=3)
    detector.advance(T0)
    detector.ignite("static", T0)
    detector.advance(T0 + 120)
    assert detector.alarm
    detector.extinguish(T0 + 120)
    trace = burn(detector, 600, start=T0 + 120)
    cleared_at = next(temp for _t, temp, alarm in trace if not alarm)
    assert 55.0 < cleared_at < 56.0
    assert detector.fire is FireState.QUIET
    assert detector.temp_c < detector.ambient_c + 1.0
    assert detector.period_s() == 30.0


@pytest.mark.parametrize(
    ("device_id", "zone", "band"),
    [
        ("hd-main-10", "main-office-a", (19.5, 26.5)),
        ("hd-main-20", "main-canteen", (25.5, 32.5)),
        ("hd-health-04", "health-canteen", (25.5, 32.5)),
    ],
)
def test_quiet_detector_drifts_inside_its_zone_band(
    device_id: str, zone: str, band: tuple[float, float]
) -> None:
    detector = DetectorSim(device_id, zone=zone, seed=11)
    battery = detector.battery_pct
    detector.advance(T0)
    temps = []
    for hour in range(1, 13):
        detector.advance(T0 + hour * 3600)
        temps.append(detector.temp_c)
    assert all(band[0] <= t <= band[1] for t in temps)
    assert max(temps) - min(temps) > 0.05  # it does drift
    assert not detector.alarm
    assert 0 < battery - detector.battery_pct < 1.0


def test_reports_number_themselves_and_pick_their_qos() -> None:
    detector = DetectorSim("hd-main-02", detector_class="A1S")
    first, qos_first = detector.report(T0)
    second, qos_second = detector.report(T0 + 30)
    assert (json.loads(first)["seq"], json.loads(second)["seq"]) == (1, 2)
    assert is_report(json.loads(first)) and is_report(json.loads(second))
    assert (qos_first, qos_second) == (0, 0)
    detector.ignite("static", T0 + 30)
    detector.advance(T0 + 150)
    alarm, qos_alarm = detector.report(T0 + 150)
    assert json.loads(alarm)["alarm"] is True and qos_alarm == 1
    detector.extinguish(T0 + 150)
    cleared, qos_cleared = detector.report(T0 + 400)
    assert json.loads(cleared)["alarm"] is False and qos_cleared == 1  # the change itself
    _quiet, qos_quiet = detector.report(T0 + 430)
    assert qos_quiet == 0
    detector.fault = "dirty"
    faulted, qos_fault = detector.report(T0 + 460)
    assert json.loads(faulted)["fault"] == "dirty" and qos_fault == 1


# ---------------------------------------------------------------- pure: malformed payloads


def _loads(payload: bytes) -> Any:
    return json.loads(payload)


def _truncated(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except json.JSONDecodeError:
        return payload.startswith(b"{")
    return False


MALFORMED_CHECKS: dict[str, tuple[str, Callable[[bytes], bool]]] = {
    "bad_json": ("hd-main-01", _truncated),
    "wrong_types": (
        "hd-main-01",
        lambda p: _loads(p)["temp_c"] == "hot" and _loads(p)["alarm"] == "yes",
    ),
    "huge_values": (
        "hd-main-01",
        lambda p: (
            _loads(p)["temp_c"] == 1e308
            and _loads(p)["seq"] == -5
            and _loads(p)["battery_pct"] == 10**12
        ),
    ),
    "unknown_device": ("hd-nowhere-99", lambda p: is_report(_loads(p))),
    "not_object": ("hd-main-01", lambda p: isinstance(_loads(p), list)),
    "oversize": (
        "hd-main-01",
        lambda p: len(p) == OVERSIZE_BYTES and isinstance(_loads(p), dict),
    ),
    "missing_fields": ("hd-main-01", lambda p: _loads(p) == {"seq": 1}),
}


def test_every_malformed_kind_has_a_check() -> None:
    assert set(MALFORMED_CHECKS) == set(MALFORMED_KINDS)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_malformed_payload_is_broken_as_specified(kind: str) -> None:
    detector = DetectorSim("hd-main-01")
    detector.report(T0)
    topic, payload = malformed_message(kind, detector, T0 + 1)
    device, check = MALFORMED_CHECKS[kind]
    assert topic == TOPIC_PREFIX + device
    assert check(payload)
    assert detector.seq == 1  # a broken message does not use up the detector's seq


def test_unknown_malformed_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed kind"):
        malformed_message("slightly_odd", DetectorSim("hd-main-01"), T0)


# ---------------------------------------------------------------- pure: the fleet's shape


def test_generated_fleet_is_the_compound() -> None:
    fleet = generated_fleet()
    ids = [d.device_id for d in fleet]
    assert len(ids) == len(set(ids)) == 48
    assert ids[0] == "hd-main-01" and ids[35] == "hd-main-36" and ids[-1] == "hd-health-12"
    assert all(d.topic == TOPIC_PREFIX + d.device_id for d in fleet)


SITE = """\
site: {id: furong, name: Furong}
devices:
  - {driver: mqtt, id: hd-main-01, kind: heat_detector, zone: main-office-a,
     broker: site, topic: furong/fire/heat/hd-main-01, detector_class: A1R, heartbeat_s: 30}
  - {driver: mqtt, id: hd-main-20, kind: heat_detector, zone: main-canteen,
     broker: site, topic: furong/fire/heat/hd-main-20, detector_class: BS, heartbeat_s: 15}
  - {driver: mqtt, id: hd-main-21, kind: heat_detector, zone: main-canteen,
     broker: site, topic: furong/fire/heat/hd-main-21, enabled: false}
  - {driver: modbus, id: lift-main-1, kind: elevator, zone: main-office-a,
     address: "tcp://192.0.2.10:502/1", profile: sanling}
"""


def test_site_file_gives_the_enabled_heat_detectors(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    fleet = load_fleet(site)
    assert [(d.device_id, d.detector_class, d.heartbeat_s, d.zone) for d in fleet] == [
        ("hd-main-01", "A1R", 30.0, "main-office-a"),
        ("hd-main-20", "BS", 15.0, "main-canteen"),
    ]
    assert fleet[1].topic == "furong/fire/heat/hd-main-20"
    assert fleet[1].ambient_c >= 26.0  # canteens run warm


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("site: {id: furong}\n", "no `devices` list"),
        ("devices: [{kind: heat_detector, zone: z}]\n", "devices\\[0\\]"),
        ("devices: [{kind: heat_detector, id: hd-1, detector_class: Z9}]\n", "class"),
        ("devices: [{kind: elevator, id: lift-1}]\n", "no enabled heat_detector"),
        ("devices: [unclosed\n", "cannot read"),
    ],
)
def test_bad_site_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_fleet(site)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:1883", ("127.0.0.1", 1883)),
        ("broker.local", ("broker.local", 1883)),
        ("[::1]:18830", ("::1", 18830)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_broker(text: str, parsed: tuple[str, int]) -> None:
    assert parse_broker(text) == parsed


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("hd-main-03", ("hd-main-03", "static")), ("hd-health-02:fast", ("hd-health-02", "fast"))],
)
def test_parse_fire(text: str, parsed: tuple[str, str]) -> None:
    assert parse_fire(text) == parsed


def test_simulate_refuses_an_unknown_detector_before_connecting() -> None:
    assert main(["--broker", "127.0.0.1:1", "--fire", "hd-nowhere-99"]) == 2


# ---------------------------------------------------------------- on the wire


def parse_report(payload: bytes) -> dict[str, Any] | None:
    """The report in a payload, or None when it breaks the contract."""
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    return message if len(payload) < 1000 and is_report(message) else None


class Heard:
    """What a plain subscriber received: (topic, payload, qos) in arrival order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, int]] = []

    def on(self, device_id: str) -> list[tuple[bytes, int]]:
        return [(p, q) for t, p, q in self.messages if t == TOPIC_PREFIX + device_id]

    def with_qos(self, device_id: str) -> list[tuple[dict[str, Any], int]]:
        """Valid reports of one detector; anything else on its topic is left out."""
        parsed = [(parse_report(p), q) for p, q in self.on(device_id)]
        return [(r, q) for r, q in parsed if r is not None]

    def reports(self, device_id: str) -> list[dict[str, Any]]:
        return [r for r, _q in self.with_qos(device_id)]


@contextlib.asynccontextmanager
async def listening(broker: Mosquitto, topic: str = TOPIC_PREFIX + "#") -> AsyncIterator[Heard]:
    heard = Heard()
    async with mqtt_client(broker.host, broker.port) as client:
        await client.subscribe([(topic, 1)])

        async def collect() -> None:
            # The reconnect test stops the broker under this subscriber on purpose.
            with contextlib.suppress(DeviceError):
                while True:
                    for message in await client.next_batch():
                        heard.messages.append((message.topic, message.payload, message.qos))

        task = asyncio.create_task(collect(), name="test-subscriber")
        try:
            yield heard
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def running(fleet: HeatDetectorFleet) -> AsyncIterator[HeatDetectorFleet]:
    task = asyncio.create_task(fleet.run(), name="test-fleet")
    try:
        await fleet.wait_connected()
        yield fleet
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


def consecutive(reports: list[dict[str, Any]]) -> bool:
    seqs = [r["seq"] for r in reports]
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_routine_reports_arrive_numbered_and_valid(mosquitto: Mosquitto) -> None:
    detectors = [DetectorSim(f"hd-main-0{n}") for n in (1, 2, 3)]
    fleet = HeatDetectorFleet(mosquitto.host, mosquitto.port, detectors, interval_s=0.2)
    async with listening(mosquitto) as heard, running(fleet):
        await until(
            lambda: all(len(heard.reports(d.device_id)) >= 5 for d in detectors),
            "five reports from every detector",
        )
    for detector in detectors:
        reports = heard.with_qos(detector.device_id)
        assert len(reports) == len(heard.on(detector.device_id))  # every one is valid
        assert [r["seq"] for r, _q in reports[:5]] == [1, 2, 3, 4, 5]
        assert all(q == 0 for _r, q in reports)
        assert all(r["alarm"] is False and r["fault"] is None for r, _q in reports)
        assert all(18.0 < r["temp_c"] < 28.0 for r, _q in reports)
        stamps = [r["ts"] for r, _q in reports]
        assert stamps == sorted(stamps)
    assert fleet.published >= 15


async def test_static_fire_raises_the_alarm_and_extinguish_clears_it(mosquitto: Mosquitto) -> None:
    detector = DetectorSim("hd-main-03", detector_class="A1S", heartbeat_s=30.0)
    fleet = HeatDetectorFleet(mosquitto.host, mosquitto.port, [detector], time_scale=30.0)
    async with listening(mosquitto) as heard, running(fleet):
        fleet.fire("hd-main-03", "static")
        await until(lambda: any(r["alarm"] for r in heard.reports("hd-main-03")), "an alarm")
        fleet.extinguish("hd-main-03")
        await until(lambda: not heard.reports("hd-main-03")[-1]["alarm"], "the alarm cleared")
    reports = heard.with_qos("hd-main-03")
    raised = next(i for i, (r, _q) in enumerate(reports) if r["alarm"])
    climbing = [r["temp_c"] for r, _q in reports[1:raised]]
    assert len(climbing) > 20 and climbing[-1] - climbing[0] > 20.0
    assert reports[raised][0]["temp_c"] >= 56.0 - 0.3
    assert reports[raised][1] == 1
    stamps = [r["ts"] for r, _q in reports[1:raised]]
    mean_gap = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    assert 0.9 < mean_gap < 1.3  # a report every (simulated) second in a fire
    cleared, qos = reports[-1]
    assert cleared["temp_c"] < 56.0 + 0.3 and qos == 1


async def test_fast_fire_rises_ten_kelvin_a_minute_and_trips_on_rate(mosquitto: Mosquitto) -> None:
    detector = DetectorSim("hd-main-07", detector_class="A1R", heartbeat_s=30.0)
    fleet = HeatDetectorFleet(mosquitto.host, mosquitto.port, [detector], time_scale=60.0)
    async with listening(mosquitto) as heard, running(fleet):
        fleet.fire("hd-main-07", "fast")
        await until(
            lambda: any(r["alarm"] for r in heard.reports("hd-main-07")), "an alarm", timeout=15
        )
    reports = heard.reports("hd-main-07")[1:]
    rising = [r for r in reports if not r["alarm"]]
    ts = [r["ts"] for r in rising]
    temps = [r["temp_c"] for r in rising]
    mean_t, mean_temp = sum(ts) / len(ts), sum(temps) / len(temps)
    slope = sum((t - mean_t) * (v - mean_temp) for t, v in zip(ts, temps, strict=True)) / sum(
        (t - mean_t) ** 2 for t in ts
    )
    print(f"fast fire: {slope * 60:.2f} K/min over {len(ts)} reports")
    assert 9.0 < slope * 60 < 11.0
    first_alarm = next(r for r in reports if r["alarm"])
    assert 45.7 <= first_alarm["temp_c"] < 50.0  # rate of rise, well before the 56 °C point


async def test_silence_stops_one_detector_and_resume_continues_its_seq(
    mosquitto: Mosquitto,
) -> None:
    detectors = [DetectorSim("hd-health-01"), DetectorSim("hd-health-02")]
    fleet = HeatDetectorFleet(mosquitto.host, mosquitto.port, detectors, interval_s=0.1)
    async with listening(mosquitto) as heard, running(fleet):
        await until(lambda: len(heard.reports("hd-health-01")) >= 3, "hd-health-01 reporting")
        fleet.silence("hd-health-01")
        await asyncio.sleep(0.2)  # one report may already be on its way
        quiet_from = len(heard.reports("hd-health-01"))
        other_from = len(heard.reports("hd-health-02"))
        await asyncio.sleep(1.0)
        assert len(heard.reports("hd-health-01")) == quiet_from
        assert len(heard.reports("hd-health-02")) >= other_from + 5
        fleet.resume("hd-health-01")
        await until(lambda: len(heard.reports("hd-health-01")) > quiet_from, "back again")
    assert consecutive(heard.reports("hd-health-01"))


async def test_each_malformed_kind_goes_out_as_specified(mosquitto: Mosquitto) -> None:
    fleet = HeatDetectorFleet(
        mosquitto.host, mosquitto.port, [DetectorSim("hd-main-01")], interval_s=3600.0
    )
    async with listening(mosquitto) as heard, running(fleet):
        for kind in MALFORMED_KINDS:
            await fleet.send_malformed(kind)
        await until(lambda: len(heard.messages) >= len(MALFORMED_KINDS), "every malformed kind")
    routine = TOPIC_PREFIX + "hd-main-01"
    broken = [(t, p, q) for t, p, q in heard.messages if t != routine or not parse_report(p)]
    assert len(broken) == len(MALFORMED_KINDS)
    for kind, (topic, payload, qos) in zip(MALFORMED_KINDS, broken, strict=True):
        device, check = MALFORMED_CHECKS[kind]
        assert topic == TOPIC_PREFIX + device, kind
        assert check(payload), kind
        assert qos == 1


async def test_control_topic_drives_injections(mosquitto: Mosquitto) -> None:
    detectors = [DetectorSim("hd-main-03"), DetectorSim("hd-main-04")]
    fleet = HeatDetectorFleet(
        mosquitto.host, mosquitto.port, detectors, interval_s=3600.0, time_scale=60.0
    )
    commands: list[bytes | str] = [
        "not json at all",
        json.dumps({"action": "explode", "device": "hd-main-03"}),
        json.dumps({"action": "fire", "device": "hd-nowhere-99"}),
        json.dumps({"action": "fault", "device": "hd-main-04", "code": "dirty"}),
        json.dumps({"action": "fire", "device": "hd-main-03", "mode": "fast"}),
        json.dumps({"action": "malformed", "kind": "missing_fields"}),
    ]
    async with (
        listening(mosquitto) as heard,
        running(fleet),
        mqtt_client(mosquitto.host, mosquitto.port) as desk,
    ):
        for command in commands:
            await desk.publish(CONTROL_TOPIC, command, qos=1)
        await until(
            lambda: any(r["alarm"] for r in heard.reports("hd-main-03")),
            "the fire started over the control topic",
            timeout=15,
        )
        await until(
            lambda: any(r["fault"] == "dirty" for r in heard.reports("hd-main-04")), "the fault"
        )
    assert fleet.detectors["hd-main-03"].fire is FireState.FAST
    assert any(json.loads(p) == {"seq": 1} for _t, p, _q in heard.messages)


async def test_burst_publishes_alarm_raises_and_clears(mosquitto: Mosquitto) -> None:
    detectors = [DetectorSim("hd-main-11"), DetectorSim("hd-main-12")]
    fleet = HeatDetectorFleet(mosquitto.host, mosquitto.port, detectors, interval_s=0.05)
    async with listening(mosquitto) as heard, running(fleet):
        sent = await fleet.burst(400, ["hd-main-11", "hd-main-12"])
        await until(
            lambda: sum(r["alarm"] for d in detectors for r in heard.reports(d.device_id)) >= 200,
            "every raise",
        )
        await asyncio.sleep(0.2)
    assert sent == 400
    for detector in detectors:
        reports = heard.with_qos(detector.device_id)
        assert consecutive([r for r, _q in reports])  # routine reports never cut into a burst
        raises = [r for r, q in reports if r["alarm"] and q == 1]
        assert len(raises) == 100
        assert all(r["temp_c"] >= 56.0 for r in raises)


async def test_fleet_reconnects_after_the_broker_restarts(mosquitto: Mosquitto) -> None:
    fleet = HeatDetectorFleet(
        mosquitto.host, mosquitto.port, [DetectorSim("hd-health-07")], interval_s=0.1
    )
    async with running(fleet):
        async with listening(mosquitto) as before:
            await until(lambda: len(before.reports("hd-health-07")) >= 3, "reports before")
            mosquitto.stop()
            await until(lambda: not fleet.connected, "the fleet saw the broker go")
        last_seq = before.reports("hd-health-07")[-1]["seq"]
        mosquitto.start()
        await fleet.wait_connected(timeout=10)
        async with listening(mosquitto) as after:
            await until(lambda: len(after.reports("hd-health-07")) >= 3, "reports after")
    assert after.reports("hd-health-07")[0]["seq"] > last_seq
    assert consecutive(after.reports("hd-health-07"))


async def test_simulate_command_runs_the_compound_until_terminated(mosquitto: Mosquitto) -> None:
    args = ["--broker", f"{mosquitto.host}:{mosquitto.port}", "--interval", "30"]
    args += ["--time-scale", "60", "--fire", "hd-main-03:fast", "--seed", "4"]
    code = "import sys; from simulators.compound import main; sys.exit(main(sys.argv[1:]))"
    async with listening(mosquitto) as heard:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await until(
                lambda: any(r["alarm"] for r in heard.reports("hd-main-03")),
                "the --fire detector in alarm",
                timeout=20,
            )
            await until(lambda: len({t for t, _p, _q in heard.messages}) == 48, "all 48 detectors")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    _out, err = await process.communicate()
            except TimeoutError:
                process.kill()
                await process.wait()
                raise
    assert process.returncode == 0
    assert b"injection=fire device=hd-main-03 mode=fast" in err
