"""Rules: pure functions of (state, item, time) that say which alert conditions hold.
One module per domain; none does I/O or reads a clock. The pipeline runs the modules of
a `RuleRegistry` in order on every item (those that can speak on the item's source) and
every module on every tick."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol, runtime_checkable

from gateway.alerts import Alert, AlertSignal
from gateway.commands import Command
from gateway.errors import ConfigError
from gateway.events import Event, Heartbeat, Reading

# What a rule says: an alert condition changed, or a device must be told something
# (linkage: open the barriers on a confirmed fire). Commands go through the same guard
# and audit as the API's, and only once the batch that caused them is committed.
Verdict = AlertSignal | Command

# Returned whenever no module said anything, so the hot path allocates no list.
_NOTHING: list[Verdict] = []


class RuleModule(Protocol):
    """One domain's rules (fire, presence; elevator, energy, vehicles next).

    Pure: given its own state, an item and the time, it returns the alert signals that
    changed and the commands it wants sent. It only signals on a transition, and it knows
    only the devices it was built with (anything else returns an empty list)."""

    name: str

    def restore(self, firing: Iterable[Alert]) -> None:
        """Take over alerts still firing from before a restart, so their clears are seen."""

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> Sequence[Verdict]:
        """Verdicts caused by one item. An empty result may be shared: never mutate it."""

    def tick(self, now: float) -> Sequence[Verdict]:
        """Time-driven signals (silence, `for:` durations); called about once a second."""


@runtime_checkable
class Follower(Protocol):
    """A rule module that also reads other modules' verdicts: the fire model follows the
    fire alarms of detectors and panel points and says `fire.confirmed`; the barrier
    linkage follows `fire.confirmed` and sends commands. Pure, like `observe`."""

    name: str

    def follow(self, signal: AlertSignal, now: float) -> Sequence[Verdict]:
        """Verdicts caused by another module's alert signal (never by its own)."""


@runtime_checkable
class Addressed(Protocol):
    """A rule module that speaks only on items from its own devices. The registry shows it
    only their items, so a heat detector's telemetry is not handed to the elevator,
    camera and meter rules at all (at 10,000 reports/s, those calls were the largest
    share of the daemon's CPU). A module that is not `Addressed` sees every item."""

    name: str

    def sources(self) -> Collection[str]:
        """The sources (device ids) of every item this module can say a word on. Fixed
        once the module is built."""


# How far one item's signals may cascade through followers (alarm -> confirmed fire ->
# barrier commands is two): a cycle between followers stops here instead of spinning.
MAX_FOLLOW_DEPTH = 4


class RuleRegistry:
    """The rule modules the pipeline runs, in order: a module earlier in the list has
    its signals applied first for the same item (presence's "heard again" comes before
    the fire alarm that the same report carries). Modules that are `Follower`s are then
    shown every alert signal the others produced for that item or tick, in order, and
    what they say in turn (at most `MAX_FOLLOW_DEPTH` rounds); never their own."""

    def __init__(self, modules: Sequence[RuleModule]) -> None:
        names = [m.name for m in modules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"rule modules listed twice: {', '.join(twice)}")
        self.modules: tuple[RuleModule, ...] = tuple(modules)
        self._followers: tuple[Follower, ...] = tuple(
            m for m in self.modules if isinstance(m, Follower))
        # Who hears an item, by its source: the modules that are not `Addressed`, and
        # the addressed ones that know the source; still in the registry's order.
        self._anyone: tuple[RuleModule, ...] = tuple(
            m for m in self.modules if not isinstance(m, Addressed))
        heard: dict[str, frozenset[str] | None] = {
            m.name: frozenset(m.sources()) if isinstance(m, Addressed) else None
            for m in self.modules}
        known = set().union(*(s for s in heard.values() if s is not None))
        self._routes: dict[str, tuple[RuleModule, ...]] = {
            source: tuple(m for m in self.modules
                          if (only := heard[m.name]) is None or source in only)
            for source in known
        }

    def module(self, name: str) -> RuleModule:
        for m in self.modules:
            if m.name == name:
                return m
        raise KeyError(name)

    def restore(self, firing: Iterable[Alert]) -> None:
        alerts = list(firing)
        for m in self.modules:
            m.restore(alerts)

    def hearers(self, source: str) -> tuple[RuleModule, ...]:
        """The modules an item from `source` is shown to, in order."""
        return self._routes.get(source, self._anyone)

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> list[Verdict]:
        said: list[tuple[object, Sequence[Verdict]]] = [
            (m, vs) for m in self._routes.get(item.source, self._anyone)
            if (vs := m.observe(item, now))
        ]
        if not said:
            return _NOTHING  # the common case: telemetry on which no module has a word
        if not self._followers:
            return _gather(vs for _, vs in said)
        return self._followed(said, now)

    def tick(self, now: float) -> list[Verdict]:
        if not self._followers:
            return _gather(m.tick(now) for m in self.modules)
        return self._followed([(m, m.tick(now)) for m in self.modules], now)

    def _followed(self, said: list[tuple[object, Sequence[Verdict]]], now: float) -> list[Verdict]:
        """What every module said and, after it, what the followers make of its alert
        signals, round by round."""
        out = _gather(vs for _, vs in said)
        fresh = [(origin, v) for origin, vs in said for v in vs if isinstance(v, AlertSignal)]
        for _ in range(MAX_FOLLOW_DEPTH):
            if not fresh:
                break
            answers: list[tuple[object, Sequence[Verdict]]] = [
                (f, f.follow(signal, now))
                for origin, signal in fresh for f in self._followers if f is not origin
            ]
            more = _gather(vs for _, vs in answers)
            if more:
                out = more if out is _NOTHING else [*out, *more]
            fresh = [(o, v) for o, vs in answers for v in vs if isinstance(v, AlertSignal)]
        return out


def _gather(results: Iterable[Sequence[Verdict]]) -> list[Verdict]:
    """The modules' verdicts in module order; the shared empty list when none said a word
    (the common case, on the hot path: no list is built for it)."""
    out = _NOTHING
    for said in results:
        if said:
            if out is _NOTHING:
                out = list(said)
            else:
                out.extend(said)
    return out
