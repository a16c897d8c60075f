"""The Modbus driver: one per endpoint (TCP peer, serial server or RS-485 line). It opens
the link, lets the line scheduler poll every unit on it, turns the words into readings
(plausibility first, counters made continuous) and unit transitions into events, and
raises `Unreachable` when the link is lost; its supervisor restarts it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from drivers.modbus.adapter import ModbusLink, Request
from drivers.modbus.blocks import Block, Tag, decode, encode, plan
from drivers.modbus.config import ModbusDevice, ModbusEndpoint
from drivers.modbus.consumption import Change, Counter
from drivers.modbus.plausibility import check
from drivers.modbus.profile import Profile, Register
from drivers.modbus.scheduler import LineScheduler, UnitPoll, UnitState, inter_frame_gap_s
from drivers.modbus.status_events import StatusEvents
from gateway.clock import Clock, SystemClock
from gateway.commands import Command, CommandResult, CommandStatus
from gateway.contract import Link, Sink
from gateway.events import Event, Reading, Severity

log = logging.getLogger("drivers.modbus")

DRIVER = "modbus"
# Three phases at 230 V: what a breaker of N amperes lets through, in kW (= kWh per hour).
_KW_PER_BREAKER_A = 3 * 230.0 / 1000.0


@dataclass(frozen=True, slots=True)
class MeterBinding:
    """One unit on the line: its site-file entry and its profile."""

    device: ModbusDevice
    profile: Profile


def _tags(binding: MeterBinding, alternate: bool) -> list[Tag]:
    quirks = binding.device.workarounds
    out = []
    for reg in binding.profile.registers:
        address = reg.address
        if alternate and reg.alternate_address is not None:
            address = reg.alternate_address
        order = quirks.word_order or binding.profile.word_order_of(reg)
        out.append(Tag(reg, address + quirks.address_offset, order))
    return out


def plans_for(binding: MeterBinding) -> list[list[Block]]:
    """The block plans to try in order, the first that the unit does not refuse with
    "illegal address" kept: per firmware variant (the configured one, or primary, first),
    and within each, a profile's gap bridge first and the plan without it next."""
    quirks = binding.device.workarounds
    has_alternate = any(r.alternate_address is not None for r in binding.profile.registers)
    gaps = [quirks.gap_bridge] if quirks.gap_bridge is not None else [binding.profile.gap_bridge]
    if quirks.gap_bridge is None and binding.profile.gap_bridge:
        gaps.append(0)  # the profile's bridge is a default, not the operator's word

    def plans(alternate: bool) -> list[list[Block]]:
        out: list[list[Block]] = []
        for gap in gaps:
            one = plan(_tags(binding, alternate), max_block=quirks.max_block, gap=gap)
            if one not in out:
                out.append(one)
        return out

    variant = binding.device.variant
    if not has_alternate or variant == "primary":
        return plans(False)
    if variant == "alternate":
        return plans(True)
    return plans(False) + plans(True)


# A counter as the store holds it: (continuous total, last raw reading, its time).
CounterState = tuple[float, float, float]


def _new_counter(binding: MeterBinding, reg: Register) -> Counter:
    rise = reg.max_rise_per_h or float("inf")
    if binding.device.breaker_a is not None and reg.unit == "kWh":
        rise = binding.device.breaker_a * _KW_PER_BREAKER_A
    return Counter(rise)


class ModbusDriver:
    def __init__(
        self,
        name: str,
        bindings: Sequence[MeterBinding],
        sink: Sink,
        *,
        clock: Clock | None = None,
        on_late: Callable[[float], None] | None = None,
    ) -> None:
        if not bindings:
            raise ValueError("a Modbus driver needs at least one device")
        self.name = name
        self._bindings = {b.device.id: b for b in bindings}
        # Each device's registers by metric, looked up once per value polled.
        self._registers = {b.device.id: {r.metric: r for r in b.profile.registers}
                           for b in bindings}
        self._endpoint: ModbusEndpoint = bindings[0].device.endpoint
        self._sink = sink
        self._clock = clock or SystemClock()
        self._on_late = on_late
        # Kept across restarts of the link: consumption stays continuous through them.
        self._counters: dict[tuple[str, str], Counter] = {}
        # Elevators and fire panels: what each said last, so only changes become events.
        self._status = StatusEvents(sink)
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._link: Link | None = None
        self._answered = False
        self._down: set[str] = set()
        self.scheduler: LineScheduler | None = None
        self.link: ModbusLink | None = None

    def _polls(self) -> list[UnitPoll]:
        return [
            UnitPoll(b.device.id, b.device.endpoint.unit, plans_for(b), b.device.poll_s,
                     single_register_writes=b.device.workarounds.no_multi_register_write)
            for b in self._bindings.values()
        ]

    async def run(self, link: Link) -> None:
        ep = self._endpoint
        timeout = min(b.device.timeout_s for b in self._bindings.values())
        modbus = ModbusLink(ep, timeout_s=timeout)
        self._link, self._answered, self._down = link, False, set()
        await modbus.open()
        self.link = modbus
        deliver = asyncio.create_task(self._deliver(), name=f"{self.name}:events")
        try:
            pause = max(b.device.workarounds.pause_after_connect_s
                        for b in self._bindings.values())
            if pause:
                await asyncio.sleep(pause)
            gap = inter_frame_gap_s(ep.baud) if ep.line_is_serial else 0.0
            self.scheduler = LineScheduler(
                modbus, self._polls(), on_values=self._values, on_state=self._state,
                on_fault=self._fault, gap_s=gap, clock=self._clock, on_late=self._on_late,
            )
            await self.scheduler.run()
        finally:
            modbus.close()
            deliver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliver
            # Events queued before the loss still go out: they happened.
            while not self._events.empty():
                await self._sink.event(self._events.get_nowait())

    async def write(self, device_id: str, address: int, values: Sequence[int]) -> None:
        """Write holding registers of one device ahead of its line's queued polls."""
        if self.scheduler is None:
            raise RuntimeError(f"{self.name} is not connected")
        binding = self._bindings[device_id]
        await self.scheduler.write(binding.device.endpoint.unit, address, values)

    def restore_counters(self, states: Mapping[tuple[str, str], CounterState]) -> None:
        """Counters as the store last holds them, (device, register metric) -> state, so
        consumption stays continuous across a restart of the daemon: what the meter
        counted while the gateway was down is added at its first reading, if plausible."""
        for (source, metric), state in states.items():
            binding = self._bindings.get(source)
            if binding is None:
                continue
            try:
                reg = binding.profile.register(metric)
            except KeyError:
                continue
            if reg.kind != "counter":
                continue
            counter = _new_counter(binding, reg)
            counter.total, counter.last_raw, counter.last_time = state
            self._counters[(source, metric)] = counter

    async def execute(self, command: Command) -> CommandResult:
        """Write one allow-listed register (the action names it: a relay coil, a holding
        register) ahead of the line's polls, then read it back. The guard has checked the
        action and value against the site file; this checks they fit the register."""
        binding = self._bindings.get(command.device)
        if binding is None or self.scheduler is None:
            return CommandResult(CommandStatus.FAILED, f"{self.name} is not connected")
        try:
            reg = binding.profile.register(command.action)
        except KeyError:
            return CommandResult(CommandStatus.FAILED, f"{command.action} is not a register "
                                 f"of {binding.profile.profile}")
        value = command.value
        if reg.function not in (1, 3):
            return CommandResult(CommandStatus.FAILED, f"{command.action} is read-only "
                                 f"(function {reg.function:02d})")
        if isinstance(value, str) or value is None:
            return CommandResult(CommandStatus.FAILED, f"{command.action} takes a number")
        unit = binding.device.endpoint.unit
        quirks = binding.device.workarounds
        address = reg.address + quirks.address_offset
        order = quirks.word_order or binding.profile.word_order_of(reg)
        if reg.function == 1:
            if value not in (0, 1):
                return CommandResult(CommandStatus.FAILED, f"{command.action} is a coil: 0 or 1")
            await self.scheduler.transact(
                lambda link: link.write_coil(unit, address, bool(value)))
        else:
            await self.scheduler.write(unit, address, encode(reg, float(value), order))
        words = await self.scheduler.transact(
            lambda link: link.read(Request(reg.function, unit, address, reg.width)))
        read_back = decode(reg, words, order)
        if math.isclose(read_back, float(value), rel_tol=1e-6, abs_tol=abs(reg.scale) / 2):
            return CommandResult(CommandStatus.VERIFIED, "read back", read_back)
        return CommandResult(CommandStatus.FAILED, f"read back {read_back:g}, not {value}",
                             read_back)

    async def _deliver(self) -> None:
        while True:
            await self._sink.event(await self._events.get())

    def _event(self, source: str, kind: str, severity: Severity, **data: object) -> None:
        device = self._bindings[source].device
        self._events.put_nowait(Event(kind, source, self._sink.next_seq(source),
                                      self._clock.now(), severity, device.zone, data=data))

    def _values(self, source: str, values: dict[str, float], now: float) -> None:
        if not self._answered and self._link is not None:
            self._answered = True
            self._link.up()
        binding = self._bindings[source]
        registers = self._registers[source]
        status = binding.profile.status
        for metric, value in values.items():
            reg = registers[metric]
            if status is not None and reg.type == "bits":
                continue  # status words become events on change (status_events), not readings
            flag = check(reg, value)
            if flag is not None:
                self._sink.rejected(DRIVER, flag.value, f"{metric}={value!r}", source)
                continue
            self._sink.telemetry(Reading(source, metric, value, reg.unit, now))
            if reg.kind == "counter":
                self._count(binding, reg, value, now)
        if status is not None:
            for event in self._status.update(binding.device, status, values, now):
                self._events.put_nowait(event)

    def _count(self, binding: MeterBinding, reg: Register, value: float, now: float) -> None:
        source = binding.device.id
        counter = self._counters.get((source, reg.metric))
        if counter is None:
            counter = self._counters[(source, reg.metric)] = _new_counter(binding, reg)
        outcome = counter.update(value, now)
        if outcome.flag is not None:
            self._sink.rejected(DRIVER, outcome.flag.value, f"{reg.metric}={value!r}", source)
            return
        if outcome.change is not Change.NONE:
            log.warning("device=%s metric=%s counter %s", source, reg.metric, outcome.change)
            self._event(source, f"meter.counter.{outcome.change.value}", Severity.MINOR,
                        metric=reg.metric, raw=value, total=outcome.total)
        self._sink.telemetry(Reading(source, f"{reg.metric}_consumed", outcome.total, reg.unit,
                                     now))

    def _state(self, source: str, state: UnitState, reason: str) -> None:
        if state is UnitState.DOWN:
            self._down.add(source)
            self._event(source, "meter.unit.down", Severity.MINOR, reason=reason)
        else:
            was_down = source in self._down
            self._down.discard(source)
            if was_down:
                self._event(source, "meter.unit.up", Severity.INFO, reason=reason)
        if self._link is None or not self._answered:
            return
        if self._down:
            self._link.degraded(f"{len(self._down)} of {len(self._bindings)} units silent")
        else:
            self._link.up()

    def _fault(self, source: str, reason: str, detail: str) -> None:
        self._sink.rejected(DRIVER, reason, detail, source)
