"""Rules: pure functions of (state, item, time) that say which alert conditions hold.
One module per domain; none does I/O or reads a clock. The pipeline runs every module
of a `RuleRegistry` in order, on every item and every tick."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

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


class RuleRegistry:
    """The rule modules the pipeline runs, in order: a module earlier in the list has
    its signals applied first for the same item (presence's "heard again" comes before
    the fire alarm that the same report carries)."""

    def __init__(self, modules: Sequence[RuleModule]) -> None:
        names = [m.name for m in modules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"rule modules listed twice: {', '.join(twice)}")
        self.modules: tuple[RuleModule, ...] = tuple(modules)
        self._observers = tuple(m.observe for m in self.modules)

    def module(self, name: str) -> RuleModule:
        for m in self.modules:
            if m.name == name:
                return m
        raise KeyError(name)

    def restore(self, firing: Iterable[Alert]) -> None:
        alerts = list(firing)
        for m in self.modules:
            m.restore(alerts)

    def observe(self, item: Event | Reading | Heartbeat, now: float) -> list[Verdict]:
        return _gather(observe(item, now) for observe in self._observers)

    def tick(self, now: float) -> list[Verdict]:
        return _gather(m.tick(now) for m in self.modules)


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
