"""The Modbus driver against real pymodbus servers on loopback (the simulated meters):
Modbus TCP and RTU over TCP, block reads as planned, a dead unit that does not stop the
line, implausible values never summed, a counter reset, writes, a lost link."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from drivers.modbus.adapter import Request, _cancellable
from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import MeterBinding, ModbusDriver, plans_for
from drivers.modbus.profile import load_profile
from drivers.modbus.scheduler import UnitState
from gateway.errors import Unreachable
from gateway.events import Event, Heartbeat, Reading, SeqCounter
from simulators.modbus_meters import MeterServer, SimulatedMeter, meter
from tests.serial_line import serial_line

PROFILES = Path(__file__).resolve().parent.parent / "config" / "profiles"
DEADLINE_S = 20.0


class Sink:
    """Records what the driver delivers (the core's ingest seam)."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.events: list[Event] = []
        self.rejects: list[tuple[str, str, str | None]] = []
        self._seq = SeqCounter()

    def telemetry(self, item: Reading | Heartbeat) -> None:
        if isinstance(item, Reading):
            self.readings.append(item)

    async def event(self, event: Event) -> None:
        self.events.append(event)

    def settle(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def next_seq(self, source: str) -> int:
        return self._seq.next(source)

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        self.rejects.append((driver, reason, source))

    def sequence(self, driver: str, source: str, *, lost: int = 0, duplicate: bool = False,
                 restarted: bool = False) -> None:
        """Modbus meters have no sequence numbers of their own."""

    def last(self, source: str, metric: str) -> float | None:
        for r in reversed(self.readings):
            if r.source == source and r.metric == metric:
                return r.value
        return None


class Link:
    def __init__(self) -> None:
        self.states: list[str] = []

    def up(self) -> None:
        self.states.append("up")

    def degraded(self, reason: str) -> None:
        self.states.append(f"degraded: {reason}")


def _device(device_id: str, address: str, profile: str, **extra: object) -> MeterBinding:
    device = ModbusDevice.model_validate({
        "driver": "modbus", "id": device_id, "kind": "energy_meter", "zone": "z",
        "address": address, "profile": profile, "poll_s": 0.1, "timeout_s": 0.2, **extra})
    return MeterBinding(device, load_profile(PROFILES / f"{profile}.yaml"))


async def _until(check: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not check():
            await asyncio.sleep(0.02)
    assert check(), what


@contextlib.asynccontextmanager
async def _running(driver: ModbusDriver, link: Link) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(driver.run(link))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Unreachable):
            await task


@pytest.mark.parametrize("rtu", [False, True], ids=["tcp", "rtu-over-tcp"])
async def test_meters_are_read_in_planned_blocks_and_decoded(rtu: bool) -> None:
    sdm = meter("eastron-sdm630", 1)
    chint = meter("chint-dtsu666", 2, variant="alternate")  # newer firmware: probed
    acrel = meter("acrel-adw300", 3)
    sdm.values["voltage_l2_v"] = 231.5
    chint.values["energy_import_kwh"] = 4321.0
    acrel.values["power_w"] = -1500
    scheme = "rtu+tcp" if rtu else "tcp"
    async with MeterServer([sdm, chint, acrel], rtu=rtu) as server:
        url = f"{scheme}://127.0.0.1:{server.port}"
        bindings = [_device("em-a", f"{url}/1", "eastron-sdm630"),
                    _device("em-b", f"{url}/2", "chint-dtsu666"),
                    _device("em-c", f"{url}/3", "acrel-adw300")]
        sink, link = Sink(), Link()
        driver = ModbusDriver("modbus:test", bindings, sink)
        async with _running(driver, link):
            await _until(lambda: all(sink.last(d, m) is not None for d, m in [
                ("em-a", "voltage_l2_v"), ("em-b", "energy_import_kwh"),
                ("em-c", "power_w")]), "every meter read")
            assert driver.scheduler is not None
            polls_before = driver.scheduler.polls
            await _until(lambda: driver.scheduler is not None
                         and driver.scheduler.polls >= polls_before + 30, "30 more polls")
    assert link.states[0] == "up"
    assert sink.last("em-a", "voltage_l2_v") == pytest.approx(231.5)
    assert sink.last("em-b", "energy_import_kwh") == pytest.approx(4321.0)
    assert sink.last("em-b", "voltage_l1_v") == pytest.approx(230.0)
    assert sink.last("em-c", "power_w") == -1500
    # The simulator counted the planned requests per poll of each unit, no more: every
    # completed poll, plus at most the one the test stopped half-way.
    assert driver.scheduler is not None
    done = driver.scheduler.completed
    # The CHINT's plans: primary bridged, primary, alternate bridged, alternate; the first
    # two are refused at their 0x101E read (one request each), the third is kept.
    in_use = {"em-a": 0, "em-b": 2, "em-c": 0}
    for unit, binding in zip((1, 2, 3), bindings, strict=True):
        per_poll = len(plans_for(binding)[in_use[binding.device.id]])
        asked = sum(server.meters[unit].requests.values())
        probes = 2 if binding.device.id == "em-b" else 0
        assert per_poll * done[binding.device.id] <= asked - probes
        assert asked - probes <= per_poll * (done[binding.device.id] + 1)
    # SDM630: one request across its table, or V+I, W, PF, Hz+kWh without the bridge.
    assert [len(p) for p in plans_for(bindings[0])] == [1, 4]
    assert [len(p) for p in plans_for(bindings[1])] == [2, 4, 2, 4]
    assert not sink.rejects


async def test_a_unit_that_refuses_reads_across_its_map_falls_back_to_the_plain_plan(
) -> None:
    strict = meter("eastron-sdm630", 1)
    strict.faults.strict_map = True  # "illegal address" for any read across a hole
    lenient, told = meter("eastron-sdm630", 2), meter("eastron-sdm630", 3)
    for m in (strict, lenient, told):
        m.values["voltage_l1_v"] = 228.5
    async with MeterServer([strict, lenient, told]) as server:
        url = f"tcp://127.0.0.1:{server.port}"
        bindings = [_device("em-strict", f"{url}/1", "eastron-sdm630"),
                    _device("em-lenient", f"{url}/2", "eastron-sdm630"),
                    _device("em-told", f"{url}/3", "eastron-sdm630",
                            workarounds={"gap_bridge": 0})]
        sink = Sink()
        driver = ModbusDriver("modbus:strict", bindings, sink)
        async with _running(driver, Link()):
            await _until(lambda: driver.scheduler is not None and min(
                driver.scheduler.completed[b.device.id] for b in bindings) >= 5, "5 polls each")
            assert driver.scheduler is not None
            done = dict(driver.scheduler.completed)
            asked = {unit: sum(m.requests.values()) for unit, m in server.meters.items()}
    assert all(sink.last(b.device.id, "voltage_l1_v") == pytest.approx(228.5)
               for b in bindings)
    # The strict unit: one refused bridged read, then 4 requests a poll, nothing counted
    # as a fault; the lenient one is read in one request, the one told not to bridge in 4.
    assert 1 + 4 * done["em-strict"] <= asked[1] <= 1 + 4 * (done["em-strict"] + 1)
    assert done["em-lenient"] <= asked[2] <= done["em-lenient"] + 1
    assert 4 * done["em-told"] <= asked[3] <= 4 * (done["em-told"] + 1)
    assert not sink.rejects


async def test_a_dead_unit_backs_off_and_the_line_goes_on() -> None:
    live, dead = meter("acrel-adw300", 1), meter("acrel-adw300", 2)
    dead.faults.dead = True
    async with MeterServer([live, dead], rtu=True) as server:
        url = f"rtu+tcp://127.0.0.1:{server.port}"
        sink, link = Sink(), Link()
        driver = ModbusDriver("modbus:line", [_device("em-live", f"{url}/1", "acrel-adw300"),
                                              _device("em-dead", f"{url}/2", "acrel-adw300")],
                              sink)
        async with _running(driver, link):
            await _until(lambda: sum(live.requests.values()) >= 40, "40 reads of the live unit")
            assert driver.scheduler is not None
            assert driver.scheduler.unit_state("em-dead") is UnitState.DOWN
            assert driver.scheduler.unit_state("em-live") is UnitState.UP
            dead_tries = sum(dead.requests.values())
            # Backing off, the dead unit got a handful of tries while the live one got 40.
            assert dead_tries <= 8
            dead.faults.dead = False
            await _until(lambda: driver.scheduler is not None
                         and driver.scheduler.unit_state("em-dead") is UnitState.UP,
                         "the unit is back")
    kinds = [(e.source, e.kind) for e in sink.events]
    assert ("em-dead", "meter.unit.down") in kinds
    assert ("em-dead", "meter.unit.up") in kinds
    assert any(s.startswith("degraded: 1 of 2 units silent") for s in link.states)
    assert link.states[-1] == "up"


async def test_absurd_values_are_flagged_and_never_summed() -> None:
    sdm = meter("eastron-sdm630", 1)
    async with MeterServer([sdm]) as server:
        sink = Sink()
        driver = ModbusDriver("modbus:x", [_device("em", f"tcp://127.0.0.1:{server.port}/1",
                                                   "eastron-sdm630")], sink)
        async with _running(driver, Link()):
            await _until(lambda: sink.last("em", "energy_import_kwh_consumed") is not None,
                         "consumption known")
            sdm.faults.absurd = True
            await _until(lambda: len(sink.rejects) >= 22, "two polls of NaN flagged")
            sdm.faults.absurd = False
            sdm.values["energy_import_kwh"] += 0.001
            await _until(lambda: (sink.last("em", "energy_import_kwh_consumed") or 0) > 0,
                         "consumption goes on")
    assert {reason for _, reason, _ in sink.rejects} == {"not_finite"}
    assert all(not math.isnan(r.value) for r in sink.readings)
    assert sink.last("em", "energy_import_kwh_consumed") == pytest.approx(0.001, abs=1e-3)


async def test_a_counter_reset_is_an_event_and_consumption_stays_continuous() -> None:
    water = meter("water-meter", 5)
    async with MeterServer([water]) as server:
        sink = Sink()
        binding = _device("wm", f"tcp://127.0.0.1:{server.port}/5", "water-meter")
        driver = ModbusDriver("modbus:w", [binding], sink)
        async with _running(driver, Link()):
            await _until(lambda: sink.last("wm", "water_total_m3_consumed") is not None, "read")
            # 30 litres between two polls 0.1 s apart is a lot, but within the slack a
            # counter's last digit is given; a leap beyond it would be flagged instead.
            water.values["water_total_m3"] += 0.03
            await _until(lambda: sink.last("wm", "water_total_m3_consumed")
                         == pytest.approx(0.03), "30 litres used")
            water.reset_counters()
            await _until(lambda: any(e.kind == "meter.counter.reset" for e in sink.events),
                         "reset seen")
            water.values["water_total_m3"] = 0.02
            await _until(lambda: sink.last("wm", "water_total_m3_consumed")
                         == pytest.approx(0.05), "continuous")
    consumed = [r.value for r in sink.readings if r.metric == "water_total_m3_consumed"]
    assert consumed == sorted(consumed)


async def test_exception_answers_are_counted_and_the_unit_stays_up() -> None:
    sdm = meter("eastron-sdm630", 1)
    sdm.faults.exception = 4  # device failure
    async with MeterServer([sdm]) as server:
        sink = Sink()
        driver = ModbusDriver("modbus:e", [_device("em", f"tcp://127.0.0.1:{server.port}/1",
                                                   "eastron-sdm630")], sink)
        async with _running(driver, Link()):
            await _until(lambda: len(sink.rejects) >= 8, "two polls of exceptions")
    assert {reason for _, reason, _ in sink.rejects} == {"exception_code"}
    assert not sink.readings


async def test_a_write_preempts_polls_and_reads_back() -> None:
    chint = meter("chint-dtsu666", 1)
    async with MeterServer([chint]) as server:
        sink = Sink()
        driver = ModbusDriver("modbus:c", [_device("em", f"tcp://127.0.0.1:{server.port}/1",
                                                   "chint-dtsu666", variant="primary")], sink)
        async with _running(driver, Link()):
            await _until(lambda: driver.link is not None and driver.scheduler is not None,
                         "connected")
            await driver.write("em", 0x3000, [7, 8])
            assert driver.link is not None
            assert await driver.link.read(Request(3, 1, 0x3000, 2)) == [7, 8]
    assert chint.requests[16] == 1


async def test_a_lost_link_raises_unreachable() -> None:
    server = await MeterServer([meter("acrel-adw300", 1)]).start()
    port = server.port
    sink = Sink()
    driver = ModbusDriver("modbus:l", [_device("em", f"tcp://127.0.0.1:{port}/1",
                                               "acrel-adw300")], sink)
    task = asyncio.create_task(driver.run(Link()))
    await _until(lambda: sink.last("em", "power_w") is not None, "read")
    await server.stop()
    with pytest.raises(Unreachable):
        async with asyncio.timeout(DEADLINE_S):
            await task
    with pytest.raises(Unreachable):
        await ModbusDriver("modbus:l", [_device("em", f"tcp://127.0.0.1:{port}/1",
                                                "acrel-adw300")], sink).run(Link())


def test_simulated_meter_defaults_are_plausible() -> None:
    for name in ("eastron-sdm630", "chint-dtsu666", "acrel-adw300", "water-meter", "gas-meter"):
        unit = meter(name, 1)
        assert isinstance(unit, SimulatedMeter)
        for reg in unit.profile.registers:
            band = reg.plausible
            if band is not None:
                assert band.min <= unit.values[reg.metric] <= band.max, (name, reg.metric)


async def test_rtu_on_a_serial_line_with_a_dead_unit_keeps_the_others_on_interval() -> None:
    meters = [meter("acrel-adw300", 1), meter("eastron-sdm630", 2), meter("water-meter", 3),
              meter("acrel-adw300", 4)]
    meters[3].faults.dead = True
    async with MeterServer(meters, rtu=True) as server, serial_line("127.0.0.1",
                                                                     server.port) as tty_path:
        url = f"rtu://{tty_path}?baud=115200&unit="
        profiles = ["acrel-adw300", "eastron-sdm630", "water-meter", "acrel-adw300"]
        bindings = [_device(f"m{u}", f"{url}{u}", p) for u, p in enumerate(profiles, start=1)]
        sink, link = Sink(), Link()
        driver = ModbusDriver("modbus:serial", bindings, sink)
        assert driver.name == "modbus:serial"
        async with _running(driver, link):
            await _until(lambda: driver.scheduler is not None
                         and min(driver.scheduler.completed[f"m{u}"] for u in (1, 2, 3)) >= 15,
                         "15 polls of every live unit")
            assert driver.scheduler is not None
            assert driver.scheduler.unit_state("m4") is UnitState.DOWN
            # The dead unit was tried only a few times: its backoff kept it off the line.
            assert sum(meters[3].requests.values()) <= 6
            assert sink.last("m2", "voltage_l1_v") == pytest.approx(230.0)
            assert sink.last("m3", "flow_m3h") == pytest.approx(3.0)
    assert ("m4", "meter.unit.down") in [(e.source, e.kind) for e in sink.events]


async def test_a_cancelled_driver_always_stops() -> None:
    # Regression: pymodbus waits with asyncio.wait_for, which on Python 3.11 loses a cancel
    # that lands as an answer arrives; the driver then polled on after the daemon's
    # shutdown. The connect waits the same way. Cancel at many moments, from the connect
    # to the polling cycle; every run must end.
    meters = [meter(name, unit) for unit, name in enumerate(
        ["eastron-sdm630", "acrel-adw300", "water-meter", "gas-meter"], start=1)]
    async with MeterServer(meters) as server:
        url = f"tcp://127.0.0.1:{server.port}"
        bindings = [_device(f"m{m.unit}", f"{url}/{m.unit}", m.profile.profile) for m in meters]
        for attempt in range(36):
            driver = ModbusDriver("modbus:cancel", bindings, Sink())
            task = asyncio.create_task(driver.run(Link()))
            await asyncio.sleep((attempt % 12) * 0.006)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=DEADLINE_S)
            assert task in done, f"attempt {attempt}: the driver did not stop"
            assert task.cancelled()


async def test_a_cancel_reaches_the_driver_even_when_the_call_swallows_it() -> None:
    # What asyncio.wait_for does on 3.11 when the answer and the cancel meet: the inner
    # call ends normally. The adapter's wrapper must still raise the cancel to its caller.
    swallowed = asyncio.Event()

    async def swallows_cancel() -> bool:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed.set()
            return True
        return False

    task = asyncio.create_task(_cancellable(swallows_cancel()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(swallowed.wait(), DEADLINE_S)


@pytest.mark.parametrize("fault", ["short_answer", "wrong_function"])
async def test_a_garbled_answer_is_refused_and_the_other_units_go_on(fault: str) -> None:
    bad, good = meter("acrel-adw300", 1), meter("acrel-adw300", 2)
    setattr(bad.faults, fault, True)
    async with MeterServer([bad, good]) as server:
        url = f"tcp://127.0.0.1:{server.port}"
        sink = Sink()
        driver = ModbusDriver("modbus:g", [_device("em-bad", f"{url}/1", "acrel-adw300"),
                                           _device("em-good", f"{url}/2", "acrel-adw300")],
                              sink)
        async with _running(driver, Link()):
            await _until(lambda: len(sink.rejects) >= 8
                         and sink.last("em-good", "energy_import_kwh_consumed") is not None,
                         "garbage refused, the good unit read")
    assert {(reason, source) for _, reason, source in sink.rejects} == {("bad_answer", "em-bad")}
    assert not [r for r in sink.readings if r.source == "em-bad"]
