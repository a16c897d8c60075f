"""The MQTT driver: one broker connection carrying many devices' reports, of every family
behind the codec seam (heat detectors, gate controllers), and the commands of those that
take them.

A persistent MQTT 3.1.1 session, acknowledged by hand: each QoS 1 report is acknowledged
only once the store has committed it with whatever the rules derived from it. Until
then the broker keeps it for this session, so a crash or a failed commit loses nothing.

Reading and acknowledging run side by side: a batch is handled and its `settle()` handed
to the acker, and the next batch is read while the store commits the last. The acker
takes the settles in order, so acknowledgements follow the store's commits.

A command (a gate's `open`) is the codec's message to the device, published at QoS 1 on
the same connection: `unverified` once the broker has it. The device's next state report
is what the rules judge against it (told to open, reports closed: jammed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from drivers.mqtt.codec import DeviceCodec
from drivers.mqtt.config import BrokerEndpoint
from drivers.mqtt.reports import DeviceBinding, ReportRouter
from gateway import trace
from gateway.clock import Clock, SystemClock
from gateway.commands import Command, CommandResult, CommandStatus
from gateway.contract import Link, Sink
from gateway.errors import Unreachable
from gateway.events import Event, Severity
from gateway.mqtt_loop import LinkOptions, MqttLink, TakeoverWatch

log = logging.getLogger("drivers.mqtt")

COMMIT_TIMEOUT_S = 10.0
PUBACK_TIMEOUT_S = 5.0
# How many batches may wait for their commit before reading pauses (the store's own
# back-pressure usually bites first).
MAX_UNSETTLED = 64
SETTLE_IDLE_S = 0.25
# Messages handled between two turns given back to the loop.
YIELD_EVERY = 64


def topic_filters(topics: Iterable[str], exact: Iterable[str] = ()) -> list[str]:
    """One `parent/+` filter per distinct parent, so reports of unknown devices are seen
    too; the `exact` topics by themselves (a controller whose siblings are its own
    command topic: what the gateway publishes must not come back in)."""
    alone = set(exact)
    filters = set(alone)
    for topic in topics:
        if topic in alone:
            continue
        parent, _, _ = topic.rpartition("/")
        filters.add(f"{parent}/+" if parent else topic)
    return sorted(filters)


class MqttDeviceDriver:
    """Subscribes to its devices' topics on one broker and feeds the sink."""

    def __init__(
        self,
        name: str,
        endpoint: BrokerEndpoint,
        bindings: Iterable[DeviceBinding],
        codecs: Mapping[str, DeviceCodec],
        sink: Sink,
        *,
        clock: Clock | None = None,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._endpoint = endpoint
        self._sink = sink
        self._clock = clock or SystemClock()
        bindings = list(bindings)
        self._router = ReportRouter(name, bindings, codecs, sink, clock=clock)
        # The devices whose family takes commands (the commander attaches them here).
        self.gates = [b.device_id for b in bindings
                      if codecs[b.codec].command(b.topic, "open", "") is not None]
        self._mqtt: MqttLink | None = None
        self._commit_timeout_s = commit_timeout_s
        self._had_session = False
        self.sessions_lost = 0
        self._takeover = TakeoverWatch(self._options().client_id)

    def _options(self) -> LinkOptions:
        ep = self._endpoint
        return LinkOptions(
            ep.host, ep.port, ep.client_id or f"gw-ingest-{self.name}",
            keepalive_s=ep.keepalive_s, username=ep.username, password=ep.password,
            # MQTT 3.1.1: paho builds an MQTT 5 `Properties` object for every PUBLISH it
            # reads, a quarter of the daemon's CPU at 10,000 reports/s (docs/benchmarks.md).
            # A 3.1.1 persistent session keeps what the ingest needs: session-present and
            # the broker's queue of unacknowledged QoS 1 reports.
            tls=ep.tls, protocol=4, clean_start=False, manual_ack=True,
        )

    async def run(self, link: Link) -> None:
        await self._router.restart(self._commit_timeout_s)
        mqtt = MqttLink(self._options())
        try:
            present = await mqtt.connect()
            # QoS 1 at most: a detector's QoS 2 publish reaches us as QoS 1, which the
            # manual acknowledgement after commit covers.
            filters = topic_filters(self._router.topics, self._router.exact_topics)
            granted = await mqtt.subscribe([(f, 1) for f in filters]) if filters else []
            await self._session_checked(present)
            self._mqtt = mqtt
            link.up()
            refused = [f for f, code in zip(filters, granted, strict=False) if code.is_failure]
            if refused:
                link.degraded(f"subscription refused: {', '.join(refused)}")
            unsettled: asyncio.Queue[tuple[asyncio.Future[None], list[tuple[int, int]]]] = (
                asyncio.Queue(MAX_UNSETTLED))
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._acknowledge(mqtt, unsettled), name=f"{self.name}-acker")
                await self._read(mqtt, unsettled)
        except BaseExceptionGroup as group:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from None
            error = _first_leaf(group)
            if isinstance(error, Exception):
                raise self._takeover.judge(mqtt, error) from None
            raise error from None
        except Exception as exc:
            judged = self._takeover.judge(mqtt, exc)
            if judged is exc:
                raise
            raise judged from exc
        finally:
            self._mqtt = None
            mqtt.close()

    async def execute(self, command: Command) -> CommandResult:
        """Publish the device's own message for `command` (QoS 1, this connection)."""
        found = self._router.binding(command.device)
        message = None if found is None else found[1].command(
            found[0].topic, command.action, command.why)
        if found is None or message is None:
            return CommandResult(CommandStatus.FAILED,
                                 f"{command.device} takes no {command.action!r} here")
        binding, codec = found
        mqtt = self._mqtt
        if mqtt is None:
            return CommandResult(CommandStatus.FAILED, "no link to the broker")
        # Queued before the publish: the device's report of this move can only come after
        # it, so the rules judge that report against this command.
        await self._told(codec.told_kind, binding, command.action, "sent", "")
        try:
            async with asyncio.timeout(PUBACK_TIMEOUT_S):
                await mqtt.publish(message[0], message[1], qos=1)
        except (TimeoutError, Unreachable) as exc:
            result = CommandResult(CommandStatus.FAILED, f"not published: {exc!r}"[:200])
        else:
            result = CommandResult(CommandStatus.UNVERIFIED, "published to the device")
        # The result is an event too, so the rules see it (the fire hold's confirmation).
        await self._told(codec.told_kind, binding, command.action, result.status.value,
                         result.detail)
        return result

    async def _told(self, kind: str, binding: DeviceBinding, action: str, status: str,
                    detail: str) -> None:
        sink = self._sink
        await sink.event(Event(
            kind, binding.device_id, seq=sink.next_seq(binding.device_id),
            time=self._clock.now(), zone=binding.zone,
            data={"state": "unknown", "commanded": action, "status": status,
                  "detail": detail}))

    async def _session_checked(self, present: bool) -> None:
        """A broker that lost our persistent session lost the reports it queued for us."""
        if present:
            self._had_session = True
            return
        if not self._had_session:
            log.info("link=%s no session on the broker yet: starting one", self.name)
            self._had_session = True
            return
        self.sessions_lost += 1
        log.warning("link=%s the broker lost this gateway's session: reports queued while "
                    "the link was down are gone; subscribing again", self.name)
        now = self._clock.now()
        await self._sink.event(Event(
            kind="mqtt.session.lost", source=self.name, seq=self._sink.next_seq(self.name),
            time=now, severity=Severity.MAJOR,
            data={"broker": f"{self._endpoint.host}:{self._endpoint.port}"},
        ))

    async def _read(self, mqtt: MqttLink,
                    unsettled: asyncio.Queue[tuple[asyncio.Future[None],
                                                   list[tuple[int, int]]]]) -> None:
        router = self._router
        loop = asyncio.get_running_loop()
        last_settle = loop.time()
        while True:
            batch = await mqtt.next_batch()
            acks = []
            for n, message in enumerate(batch, 1):
                if not n % YIELD_EVERY:
                    # A long batch gives the loop a turn now and then: the pipeline, the
                    # writer's answers and the forwarder must not wait for all of it.
                    await asyncio.sleep(0)
                if trace.ON:
                    trace.reading = message.timestamp
                await router.handle(message.topic, bytes(message.payload),
                                    retained=message.retain)
                if message.qos:
                    acks.append((message.mid, message.qos))
            # A batch of QoS 0 telemetry has nothing to acknowledge: its settle only moves
            # the router's settled memory on, which can wait a little (one settle per
            # SETTLE_IDLE_S instead of one per socket read).
            if acks or loop.time() - last_settle >= SETTLE_IDLE_S:
                last_settle = loop.time()
                await unsettled.put((router.settle(), acks))

    async def _acknowledge(self, mqtt: MqttLink,
                           unsettled: asyncio.Queue[tuple[asyncio.Future[None],
                                                          list[tuple[int, int]]]]) -> None:
        while True:
            settled, acks = await unsettled.get()
            try:
                async with asyncio.timeout(self._commit_timeout_s):
                    await settled
            except TimeoutError:
                raise Unreachable(
                    f"store did not commit within {self._commit_timeout_s:g} s; "
                    "not acknowledging") from None
            for mid, qos in acks:
                mqtt.ack(mid, qos)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first
