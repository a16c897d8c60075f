"""The pipeline: takes batches off the bus, runs every module of the rule registry, and
writes one store batch per bus batch. Alert changes, their outbox rows and the events
behind them commit together; only after that commit are they published to the desk feed,
the forwarders woken and the drivers' `Settle` markers resolved (they acknowledge their
devices then).

Rule and alert state move before the commit (batches are pipelined). So a failed commit
is not retried here: the writer refuses every later batch, every marker fails, and
`on_store_failed` tells the gateway, which rebuilds the core from the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from gateway import trace
from gateway.alerts import Alert, AlertBook, AlertChange, AlertState
from gateway.bus import Bus
from gateway.clock import Clock
from gateway.commands import Command, Decision
from gateway.errors import StoreFailed
from gateway.events import Event, Heartbeat, Item, Reading, Settle, Severity
from gateway.forward.messages import Route, alert_rows, state_rows
from gateway.ingest import Decisions
from gateway.lift_availability import AvailabilityLog
from gateway.metrics import Metrics
from gateway.rules import RuleRegistry, Verdict
from gateway.store import AlertRecord, AuditRow, DeviceStateRow, Store, WriteBatch
from gateway.store.downsample import Downsampler

log = logging.getLogger("gateway.pipeline")

# Silence detection and minute flushes run this often, from the pipeline task itself.
TICK_S = 1.0
# Store batches that may wait for the writer before the pipeline stops taking from the
# bus (whose lanes then push back on the drivers): a bound, not a queue without end.
MAX_UNCOMMITTED = 64


def alert_to_record(alert: Alert) -> AlertRecord:
    return AlertRecord(
        id=alert.id, key=alert.key, rule=alert.rule, source=alert.source, zone=alert.zone,
        severity=int(alert.severity), state=alert.state.value, raised_at=alert.raised_at,
        cleared_at=alert.cleared_at, summary=alert.summary, data=alert.data, drill=alert.drill,
    )


def record_to_alert(rec: AlertRecord) -> Alert:
    return Alert(
        id=rec.id, key=rec.key, rule=rec.rule, source=rec.source, zone=rec.zone,
        severity=Severity(rec.severity), state=AlertState(rec.state), raised_at=rec.raised_at,
        cleared_at=rec.cleared_at, summary=rec.summary, data=dict(rec.data), drill=rec.drill,
    )


@dataclass
class _Pending:
    """What one store batch will make visible once it is committed."""

    changes: list[AlertChange] = field(default_factory=list)
    oldest_event: float | None = None
    settles: list[asyncio.Future[None]] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    decisions: list[tuple[asyncio.Future[Decision], Decision]] = field(default_factory=list)
    traced: list[str] = field(default_factory=list)  # alert ids (gateway.trace, when on)


class Pipeline:
    def __init__(
        self,
        *,
        bus: Bus,
        store: Store,
        book: AlertBook,
        rules: RuleRegistry,
        metrics: Metrics,
        clock: Clock,
        routes: list[Route],
        on_committed: Callable[[], None],
        on_store_failed: Callable[[BaseException], None] | None = None,
        on_command: Callable[[Command], None] | None = None,
        decisions: Decisions | None = None,
        on_reading: Callable[[Reading], None] | None = None,
        on_raised: Callable[[Alert], None] | None = None,
        availability: AvailabilityLog | None = None,
    ) -> None:
        self._bus = bus
        self._store = store
        self._book = book
        self._rules = rules
        self._metrics = metrics
        self._clock = clock
        self._routes = routes
        self._on_committed = on_committed
        self._on_store_failed = on_store_failed
        self._on_command = on_command
        self._on_raised = on_raised  # before the commit: may add to the alert's data
        self._decisions = decisions if decisions is not None else Decisions()
        self._on_reading = on_reading  # the meters' figures (gateway.metering)
        self._availability = availability  # the lifts' states, sampled at each tick
        self._last_submitted: asyncio.Future[None] | None = None
        self.failed: BaseException | None = None
        self._downsampler = Downsampler()
        self._device_state: dict[str, str] = {}
        self.last_progress = clock.monotonic()
        self.items = 0
        self.store_failures = 0

    def restore_device_states(self, rows: Iterable[DeviceStateRow]) -> None:
        for row in rows:
            self._device_state[row.source] = row.state

    async def run(self) -> None:
        last_tick = self._clock.monotonic()
        while True:
            batch: list[Item] = []
            await self._store.wait_for_room(MAX_UNCOMMITTED)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):
                    batch = await self._bus.get_batch()
            if batch:
                self.process(batch)
                # get_batch does not wait while the bus holds work: give the loop a turn,
                # so reading, commits' answers and forwarding go on under a backlog too.
                await asyncio.sleep(0)
            if self._clock.monotonic() - last_tick >= TICK_S:
                last_tick = self._clock.monotonic()
                self.tick()

    def process(self, items: list[Item]) -> None:
        now = self._clock.now()
        self.last_progress = self._clock.monotonic()
        self.items += len(items)
        wb = WriteBatch()
        pending = _Pending()
        observe = self._rules.observe
        decisions = self._decisions
        on_reading = self._on_reading
        readings = 0
        started = trace.now() if trace.ON else 0.0
        for item in items:
            decided = None
            kind = type(item)
            if kind is Reading:
                self._downsampler.add(item)  # type: ignore[arg-type]
                if on_reading is not None:
                    on_reading(item)  # type: ignore[arg-type]
                readings += 1
            elif kind is Heartbeat:
                source = item.source  # type: ignore[union-attr]
                if self._device_state.get(source) != "up":
                    self._device_transition(source, "up", "reporting", now, wb)
            elif kind is Settle:
                pending.settles.append(item.future)  # type: ignore[union-attr]
                continue
            else:
                event: Event = item  # type: ignore[assignment]
                wb.events.append(event)
                self._metrics.event(event.kind)
                if pending.oldest_event is None or event.time < pending.oldest_event:
                    pending.oldest_event = event.time
                if decisions:
                    decided = decisions.take(event.id)
            signals = observe(item, now)  # type: ignore[arg-type]
            if decided is not None:
                signals = self._decide(item, signals, decided, now, wb, pending)  # type: ignore[arg-type]
            if signals:
                raised_before = len(pending.changes)
                self._apply(signals, now, wb, pending)
                if trace.ON and kind is Event:
                    self._trace_raised(item, started, pending, raised_before)  # type: ignore[arg-type]
        if trace.ON:
            done = trace.now()
            for alert_id in pending.traced:
                trace.alert_stage(alert_id, "processed", done)
        if readings:
            self._metrics.readings(readings)
        wb.minutes.extend(self._downsampler.flush_due(now))
        self._submit(wb, pending)

    @staticmethod
    def _trace_raised(event: Event, started: float, pending: _Pending, first: int) -> None:
        trace.event_stage(event.id, "pipeline", started)
        for change in pending.changes[first:]:
            if change.change == "raised":
                trace.raised(change.alert.id, event.source, event.id)
                pending.traced.append(change.alert.id)

    def tick(self) -> None:
        """Once a second: the rules' time-driven signals (silence) and the downsampler's
        due minutes."""
        now = self._clock.now()
        self.last_progress = self._clock.monotonic()
        wb = WriteBatch()
        pending = _Pending()
        signals = self._rules.tick(now)
        if signals:
            self._apply(signals, now, wb, pending)
        wb.minutes.extend(self._downsampler.flush_due(now))
        if self._availability is not None:
            self._availability.sample(now)
            wb.availability.extend(self._availability.flush_due(now))
        self._submit(wb, pending)

    def flush(self) -> None:
        """On shutdown: write the minutes still being aggregated."""
        wb = WriteBatch()
        wb.minutes.extend(self._downsampler.flush_all())
        if self._availability is not None:
            wb.availability.extend(self._availability.flush_all())
        self._submit(wb, _Pending())

    def _decide(
        self, event: Event, verdicts: Sequence[Verdict], decided: asyncio.Future[Decision],
        now: float, wb: WriteBatch, pending: _Pending,
    ) -> list[Verdict]:
        """A driver awaits this event's decision: the rules' commands for it go back to
        the driver (which answers its device with them), audited in the event's batch,
        and not to the commander as well."""
        commands = tuple(v for v in verdicts if isinstance(v, Command))
        for c in commands:
            wb.audit.append(AuditRow(now, c.who, f"decision.{c.action}", c.device,
                                     {"why": c.why, "value": c.value, "event": event.id,
                                      "source": event.source}))
        reason = "" if commands else "the rules asked for nothing"
        pending.decisions.append((decided, Decision(commands, reason)))
        return [v for v in verdicts if not isinstance(v, Command)]

    def _apply(
        self, verdicts: Sequence[Verdict], now: float, wb: WriteBatch, pending: _Pending
    ) -> None:
        for signal in verdicts:
            if isinstance(signal, Command):
                pending.commands.append(signal)
                continue
            if signal.device_state is not None:
                self._device_transition(signal.source, signal.device_state, signal.summary,
                                        now, wb)
            change = self._book.apply(signal, now)
            if change is None:
                continue
            pending.changes.append(change)
            if change.change == "raised" and self._on_raised is not None:
                self._on_raised(change.alert)
            wb.alerts.append(alert_to_record(change.alert))
            wb.outbox.extend(alert_rows(change, self._routes))
            if change.change == "raised":
                self._metrics.alert_raised(change.alert.severity)
            log.log(
                logging.WARNING if change.change == "raised" else logging.INFO,
                "alert %s key=%s id=%s severity=%s zone=%s drill=%s summary=%r",
                change.change, change.alert.key, change.alert.id, change.alert.severity.label,
                change.alert.zone, change.alert.drill, change.alert.summary,
            )

    def _device_transition(
        self, source: str, state: str, detail: str, now: float, wb: WriteBatch
    ) -> None:
        previous = self._device_state.get(source)
        if previous == state:
            return
        self._device_state[source] = state
        wb.device_states.append(
            DeviceStateRow(source=source, state=state, since=now, detail=detail, last_seen=now)
        )
        self._metrics.device_transition(source, state)
        keys = [a.key for a in self._book.active() if a.source == source]
        wb.outbox.extend(state_rows(source, state, now, keys, self._routes))
        # A device heard for the first time since start-up is news only when debugging.
        log.log(logging.DEBUG if previous is None else logging.INFO,
                "device=%s state=%s previous=%s detail=%r", source, state, previous or "-", detail)

    def _submit(self, wb: WriteBatch, pending: _Pending) -> None:
        if not (wb.events or wb.minutes or wb.alerts or wb.outbox or wb.device_states or wb.audit
                or wb.availability):
            if pending.commands:
                # A command from a tick or a reading alone: audited by the commander.
                self._submit_commands_after(self._last_submitted, pending.commands)
            if pending.settles:
                # Nothing of this batch to write: its markers wait for the batch before.
                self._settle_after(self._last_submitted, pending.settles)
            return
        has_outbox = bool(wb.outbox)
        # The writer calls `then` in the very turn it settles the future; the future's
        # done-callback is the fallback for a future settled otherwise (cancelled).
        once = _Once()
        done = self._store.submit(
            wb, then=lambda: once(lambda: self._committed(done, pending, has_outbox)))
        self._last_submitted = done
        done.add_done_callback(lambda fut: once(lambda: self._committed(fut, pending,
                                                                       has_outbox)))

    def _submit_commands_after(
        self, previous: asyncio.Future[None] | None, commands: list[Command]
    ) -> None:
        if previous is None or previous.done():
            if previous is None or _error_of(previous) is None:
                self._send(commands)
            return
        previous.add_done_callback(
            lambda fut: self._send(commands) if _error_of(fut) is None else None
        )

    def _send(self, commands: list[Command]) -> None:
        if self._on_command is not None:
            for command in commands:
                self._on_command(command)

    def _settle_after(
        self, previous: asyncio.Future[None] | None, settles: list[asyncio.Future[None]]
    ) -> None:
        if previous is None or previous.done():
            error = None if previous is None else _error_of(previous)
            _resolve(settles, error)
            return
        previous.add_done_callback(lambda fut: _resolve(settles, _error_of(fut)))

    def _committed(self, fut: asyncio.Future[None], pending: _Pending, has_outbox: bool) -> None:
        exc = _error_of(fut)
        _resolve(pending.settles, exc)
        for decided, decision in pending.decisions:
            if decided.done():
                continue  # the driver gave up waiting (and denied)
            if exc is None:
                decided.set_result(decision)
            else:
                decided.set_exception(exc)
        if exc is not None:
            # Nothing here may be forwarded or shown unstored; the gateway restarts the
            # core from what the store holds.
            self.store_failures += 1
            if self.failed is None:
                self.failed = exc
                if self._on_store_failed is not None:
                    self._on_store_failed(exc)
            return
        if pending.traced:
            self._trace_committed(fut, pending.traced)
        if pending.oldest_event is not None:
            self._metrics.ingest_to_store(self._clock.now() - pending.oldest_event)
        for change in pending.changes:
            self._book.publish(change)
        # Linkage only for what is committed: a command never runs ahead of its cause.
        self._send(pending.commands)
        if has_outbox:
            self._on_committed()


    @staticmethod
    def _trace_committed(fut: asyncio.Future[None], alert_ids: list[str]) -> None:
        seen = trace.now()
        commit = trace.take_commit(id(fut))
        for alert_id in alert_ids:
            if commit is not None:
                trace.alert_stage(alert_id, "commit_start", commit[0])
                trace.alert_stage(alert_id, "commit_end", commit[1])
            trace.alert_stage(alert_id, "committed", seen)


class _Once:
    """Runs the first function it is given, and ignores every later one."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def __call__(self, fn: Callable[[], None]) -> None:
        if not self.done:
            self.done = True
            fn()


def _error_of(fut: asyncio.Future[None]) -> BaseException | None:
    if fut.cancelled():
        return StoreFailed("the commit was cancelled")
    exc = fut.exception()
    if exc is None or isinstance(exc, StoreFailed):
        return exc
    return StoreFailed(repr(exc))


def _resolve(settles: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for settle in settles:
        if settle.done():
            continue
        if error is None:
            settle.set_result(None)
        else:
            settle.set_exception(error)
