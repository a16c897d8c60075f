"""Link transitions as events through the sink: once per transition for the link
(`camera.stream.down` / `up`) and per unit on a shared line (unit 7 down while the RS-485
line is up). Failures are injected by a driver that fails on cue."""

from __future__ import annotations

import asyncio

from gateway.bus import Bus
from gateway.contract import Link
from gateway.errors import Unreachable
from gateway.events import Event, Severity
from gateway.ingest import Ingest
from gateway.metrics import Metrics
from gateway.supervisor import Backoff, LinkState, Supervisor


class ScriptedLine:
    """Fails `failures` times, then comes up and plays `units` (unit, ok) on the link,
    then fails once more and comes up again."""

    def __init__(self, name: str, failures: int, units: list[tuple[str, bool]]) -> None:
        self.name = name
        self.failures = failures
        self.units = units
        self.runs = 0
        self.played = asyncio.Event()

    async def run(self, link: Link) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise Unreachable("connection refused")
        link.up()
        link.up()  # saying it twice is no second transition
        if self.runs == self.failures + 1:
            for unit, ok in self.units:
                if ok:
                    link.unit_up(unit)
                else:
                    link.unit_down(unit, "no answer in 1 s")
            raise Unreachable("line dropped")
        self.played.set()
        await asyncio.Event().wait()


async def run_until_played(sup: Supervisor, driver: ScriptedLine) -> None:
    task = asyncio.create_task(sup.run())
    try:
        async with asyncio.timeout(5):
            await driver.played.wait()
            await sup.flushed()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def events_of(bus: Bus) -> list[Event]:
    items = []
    while any(bus.depth(lane) for lane in bus.bounds):
        items.extend(await bus.get_batch())
    return [i for i in items if isinstance(i, Event)]


async def test_a_camera_stream_goes_down_and_up_once_per_transition() -> None:
    bus = Bus()
    driver = ScriptedLine("rtsp:cam-gate-n", 3, [])
    sup = Supervisor(driver, backoff=Backoff(base_s=0.001, cap_s=0.01),
                     sink=Ingest(bus, Metrics()), family="camera.stream")
    await run_until_played(sup, driver)
    events = await events_of(bus)
    assert [(e.kind, e.source) for e in events] == [
        ("camera.stream.down", "rtsp:cam-gate-n"),  # three failures: one transition
        ("camera.stream.up", "rtsp:cam-gate-n"),
        ("camera.stream.down", "rtsp:cam-gate-n"),
        ("camera.stream.up", "rtsp:cam-gate-n"),
    ]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].data == {"link": "rtsp:cam-gate-n",
                              "reason": "Unreachable: connection refused"}
    assert events[0].severity is Severity.MAJOR
    assert events[1].severity is Severity.INFO
    assert sup.state is LinkState.UP


async def test_a_shared_line_keeps_per_unit_state() -> None:
    bus = Bus()
    driver = ScriptedLine("modbus:rs485-b1", 0, [
        ("em-b1-06", True),   # first answer after start-up: no news
        ("em-b1-07", False),
        ("em-b1-07", False),  # still down: no second event
        ("em-b1-06", True),
        ("em-b1-07", True),
        ("em-b1-07", True),
    ])
    sup = Supervisor(driver, backoff=Backoff(base_s=0.001, cap_s=0.01),
                     sink=Ingest(bus, Metrics()), family="modbus.line")
    await run_until_played(sup, driver)
    events = await events_of(bus)
    # The bus keeps each source's order (a down may overtake another source's up).
    by_source: dict[str, list[str]] = {}
    for e in events:
        by_source.setdefault(e.source, []).append(e.kind)
    assert by_source == {
        "modbus:rs485-b1": ["modbus.line.up", "modbus.line.down", "modbus.line.up"],
        "em-b1-07": ["modbus.line.unit.down", "modbus.line.unit.up"],  # while the line is up
    }
    unit_down = next(e for e in events if e.kind == "modbus.line.unit.down")
    assert unit_down.data == {"link": "modbus:rs485-b1", "reason": "no answer in 1 s"}
    assert sup.units == {"em-b1-06": "up", "em-b1-07": "up"}


async def test_without_a_family_no_event_is_made() -> None:
    bus = Bus()
    driver = ScriptedLine("mqtt:site", 1, [("x", False)])
    sup = Supervisor(driver, backoff=Backoff(base_s=0.001, cap_s=0.01),
                     sink=Ingest(bus, Metrics()))
    await run_until_played(sup, driver)
    assert await events_of(bus) == []
    assert sup.units == {"x": "down"}
