"""From one broker's messages to the sink: route by topic to the device's codec, drop
repeats by the device's own sequence number, and keep the flag memory that turns reports
into change events in step with what the store committed.

Two memories per device: the working one, moved by every report handled, and the
settled one, as of the last `settle()` that the store confirmed. When the link restarts,
the broker sends again every report not acknowledged; they are judged against the
settled memory, so a report whose commit failed raises its event again, and one already
committed is recognised as a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.mqtt.codec import DeviceCodec
from gateway import sequence
from gateway.clock import Clock, SystemClock
from gateway.contract import Sink
from gateway.errors import PayloadRejected
from gateway.events import Event, Severity

log = logging.getLogger("drivers.mqtt")

# A gap this large in a device's numbering is an event of its own, not only a counter:
# the desk should know that a detector's reports went missing.
LARGE_GAP = 10


@dataclass(frozen=True, slots=True)
class DeviceBinding:
    """One device on a broker: its id, zone, topic, codec family, and what the store last
    knew of its flags (so a device that went quiet in alarm is cleared when it reports)."""

    device_id: str
    zone: str
    topic: str
    codec: str = "heat_detector"
    known: Mapping[str, Any] = field(default_factory=dict)
    # The device's own number of the last report that changed a flag, as stored.
    last_seq: int | None = None
    # Subscribed to by its own topic alone. Otherwise by its parent's `+`, so that reports
    # of unknown devices of the family are seen (and counted) too.
    exact: bool = False
    # The site file's `driver:` of the device: its rejected payloads are counted under it.
    driver: str = "mqtt"


@dataclass(slots=True)
class _State:
    memory: Any
    last_seq: int | None = None


class ReportRouter:
    def __init__(
        self,
        driver: str,
        bindings: Iterable[DeviceBinding],
        codecs: Mapping[str, DeviceCodec],
        sink: Sink,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._driver = driver
        self._sink = sink
        self._clock = clock or SystemClock()
        self._by_topic: dict[str, tuple[DeviceBinding, DeviceCodec]] = {}
        self._settled: dict[str, _State] = {}
        self._device_codec: dict[str, DeviceCodec] = {}
        for b in bindings:
            codec = codecs.get(b.codec)
            if codec is None:
                raise ValueError(f"device {b.device_id}: no codec {b.codec!r} on {driver}")
            self._by_topic[b.topic] = (b, codec)
            self._device_codec[b.device_id] = codec
            self._settled[b.device_id] = _State(codec.memory(b.known), b.last_seq)
        self._working = self._copy(self._settled)
        self._touched: set[str] = set()
        self._pending: asyncio.Future[None] | None = None
        self._bug_logged = False

    @property
    def topics(self) -> list[str]:
        return list(self._by_topic)

    @property
    def exact_topics(self) -> list[str]:
        return [t for t, (b, _) in self._by_topic.items() if b.exact]

    def binding(self, device_id: str) -> tuple[DeviceBinding, DeviceCodec] | None:
        for binding, codec in self._by_topic.values():
            if binding.device_id == device_id:
                return binding, codec
        return None

    def _copy(self, states: Mapping[str, _State]) -> dict[str, _State]:
        codecs = self._device_codec
        return {
            device_id: _State(codecs[device_id].copy(state.memory), state.last_seq)
            for device_id, state in states.items()
        }

    async def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        """One message. A retained one is an old report: its flags count, its readings and
        its proof of life do not (a dead detector must not look alive)."""
        sink = self._sink
        entry = self._by_topic.get(topic)
        if entry is None:
            sink.rejected("mqtt", "unknown_device", topic[:120])
            return
        binding, codec = entry
        device_id = binding.device_id
        try:
            report = codec.decode(payload)
        except PayloadRejected as exc:
            sink.rejected(binding.driver, exc.reason, exc.detail, device_id)
            return
        except Exception as exc:
            # A decoder bug: the message is answered as rejected, never retried forever.
            if not self._bug_logged:
                self._bug_logged = True
                log.error("decoder error driver=%s device=%s", self._driver, device_id,
                          exc_info=True)
            sink.rejected(binding.driver, "decoder_error", repr(exc)[:120], device_id)
            return
        state = self._working[device_id]
        now = self._clock.now()
        events: list[Event] = []
        seq = codec.seq_of(report)
        if seq is not None:
            checked = sequence.check(state.last_seq, seq)
            if checked.verdict is sequence.Verdict.DUPLICATE:
                sink.sequence(self._driver, device_id, duplicate=True)
                return
            if checked.verdict is sequence.Verdict.RESTARTED:
                sink.sequence(self._driver, device_id, restarted=True)
            elif checked.lost:
                sink.sequence(self._driver, device_id, lost=checked.lost)
                if checked.lost >= LARGE_GAP and state.last_seq is not None:
                    events.append(Event(
                        "device.reports_lost", device_id, sink.next_seq(device_id), now,
                        Severity.MINOR, binding.zone, None,
                        {"lost": checked.lost, "after_seq": state.last_seq, "seq": seq}))
            state.last_seq = seq
        if codec.repeat(report, state.memory):
            sink.sequence(self._driver, device_id, duplicate=True)
            return
        telemetry, changes = codec.normalise(
            device_id, binding.zone, report, state.memory, now, sink.next_seq)
        for event in (*events, *changes):
            await sink.event(event)
        if not retained:
            for item in telemetry:
                sink.telemetry(item)
        self._touched.add(device_id)

    def settle(self) -> asyncio.Future[None]:
        """A future for everything handled so far; once it resolves, that is the memory
        the next link starts from."""
        snapshot = {d: self._working[d] for d in self._touched}
        snapshot = self._copy(snapshot)
        self._touched.clear()
        future = self._sink.settle()

        def settled(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is None:
                self._settled.update(snapshot)

        future.add_done_callback(settled)
        self._pending = future
        return future

    async def restart(self, timeout_s: float) -> None:
        """A new link: wait (bounded) for the last settle, then start from the settled
        memory, against which the broker's redeliveries are judged."""
        pending = self._pending
        if pending is not None and not pending.done():
            with contextlib.suppress(Exception, TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending), timeout_s)
        self._working = self._copy(self._settled)
        self._touched.clear()
