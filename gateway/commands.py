"""Commands to devices: what a command is, the pure guard every command passes (allow-list
per device from the site file, value check, per-device token bucket), and the commander
that routes a command by device to the driver that takes it, audits it and reads back.

A command from the API and one a rule emits (linkage) take the same path:
  guard -> audit "requested" (must commit, or the command is not sent) -> driver's
  `execute` (bounded in time) -> audit the result (verified, unverified, failed, refused).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.clock import Clock
from gateway.errors import StoreFailed
from gateway.store import AuditRow, WriteBatch

if TYPE_CHECKING:
    from gateway.config import DeviceCommands
    from gateway.contract import Commandable
    from gateway.store import Store

log = logging.getLogger("gateway.commands")

# A device that has not answered a command in this long has not done it, as far as the
# gateway can tell; the barrier's motor takes about 4 s, a setpoint far less.
EXECUTE_TIMEOUT_S = 10.0

Value = float | int | str | bool | None


@dataclass(frozen=True, slots=True)
class Command:
    """One request to change a device: `who` asked for it and `why` (both audited)."""

    device: str
    action: str
    value: Value = None
    who: str = "gateway"
    why: str = ""


class CommandStatus(enum.StrEnum):
    VERIFIED = "verified"  # done, and the device's read-back shows it
    UNVERIFIED = "unverified"  # sent and accepted; the device cannot tell more
    FAILED = "failed"  # sent, and it did not happen (or no answer in time)
    REFUSED = "refused"  # never sent: not allowed, a bad value, rate-limited, not audited


@dataclass(frozen=True, slots=True)
class CommandResult:
    status: CommandStatus
    detail: str = ""
    read_back: Value = None

    @property
    def done(self) -> bool:
        return self.status in (CommandStatus.VERIFIED, CommandStatus.UNVERIFIED)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "detail": self.detail, "read_back": self.read_back}


@dataclass(frozen=True, slots=True)
class Decision:
    """The rules' answer to one event a push driver awaits (`Sink.decide`): the commands
    they derived from it, committed and audited with the event. No command is a deny."""

    commands: tuple[Command, ...] = ()
    reason: str = ""

    @property
    def allow(self) -> bool:
        return bool(self.commands)

    def asks(self, action: str, device: str | None = None) -> bool:
        return any(c.action == action and (device is None or c.device == device)
                   for c in self.commands)


@dataclass(frozen=True, slots=True)
class Allowed:
    """One allow-listed action of one device. No range and no set: it takes no value."""

    action: str
    minimum: float | None = None
    maximum: float | None = None
    values: frozenset[Value] | None = None

    def refusal(self, value: Value) -> str | None:
        if self.values is not None:
            if value not in self.values:
                shown = ", ".join(sorted(repr(v) for v in self.values))
                return f"value {value!r} is not one of {shown}"
            return None
        if self.minimum is None and self.maximum is None:
            return None if value is None else f"{self.action} takes no value"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"value {value!r} is not a number"
        if self.minimum is not None and value < self.minimum:
            return f"value {value:g} is below {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"value {value:g} is above {self.maximum:g}"
        return None


@dataclass(frozen=True, slots=True)
class Rate:
    per_minute: float = 6.0
    burst: int = 3


@dataclass(slots=True)
class TokenBucket:
    """Pure: `take(now)` spends a token if one is there. Starts full."""

    rate: Rate
    tokens: float = -1.0
    at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is None:
            self.tokens = float(self.rate.burst)
        else:
            refill = max(0.0, now - self.at) * self.rate.per_minute / 60.0
            self.tokens = min(float(self.rate.burst), self.tokens + refill)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class DevicePolicy:
    device: str
    allowed: Mapping[str, Allowed]
    rate: Rate = field(default_factory=Rate)


def policy_of(device: str, commands: DeviceCommands) -> DevicePolicy:
    """The guard's view of a device's `commands:` in the site file."""
    allowed = {
        a.action: Allowed(a.action, a.min, a.max,
                          None if a.values is None else frozenset(a.values))
        for a in commands.allow
    }
    return DevicePolicy(device, allowed, Rate(commands.rate.per_minute, commands.rate.burst))


class CommandGuard:
    """Pure: the site file's allow-lists and a token bucket per device. `check` says why
    a command may not be sent, or None; a refused command spends no token."""

    def __init__(self, policies: Iterable[DevicePolicy]) -> None:
        self._policies = {p.device: p for p in policies}
        self._buckets = {p.device: TokenBucket(p.rate) for p in self._policies.values()}

    def check(self, command: Command, now: float) -> str | None:
        policy = self._policies.get(command.device)
        if policy is None:
            return f"device {command.device} takes no commands"
        allowed = policy.allowed.get(command.action)
        if allowed is None:
            return f"{command.action} is not allowed on {command.device}"
        refusal = allowed.refusal(command.value)
        if refusal is not None:
            return refusal
        if not command.why.strip():
            return "a command needs a reason"
        if not self._buckets[command.device].take(now):
            rate = policy.rate
            return (f"rate limit: {command.device} takes {rate.per_minute:g} commands a"
                    f" minute, {rate.burst} at once")
        return None


class Commander:
    """Routes commands by device id to the drivers that take them; every command, sent
    or refused, leaves audit rows in the store."""

    def __init__(
        self, guard: CommandGuard, store: Store, clock: Clock,
        *, timeout_s: float = EXECUTE_TIMEOUT_S,
    ) -> None:
        self._guard = guard
        self._store = store
        self._clock = clock
        self._timeout_s = timeout_s
        self._drivers: dict[str, Commandable] = {}

    def attach(self, device: str, driver: Commandable) -> None:
        self._drivers[device] = driver

    def detach(self, device: str) -> None:
        self._drivers.pop(device, None)

    async def execute(self, command: Command) -> CommandResult:
        refusal = self._guard.check(command, self._clock.monotonic())
        if refusal is None and command.device not in self._drivers:
            refusal = f"no running driver takes commands for {command.device}"
        if refusal is not None:
            result = CommandResult(CommandStatus.REFUSED, refusal)
            await self._audit(command, "refused", result)
            return result
        try:
            # No command leaves the gateway unaudited.
            await self._audit(command, "requested", None)
        except StoreFailed as exc:
            result = CommandResult(CommandStatus.REFUSED, f"not audited: {exc}")
            self._log(command, result)
            return result
        driver = self._drivers[command.device]
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await driver.execute(command)
        except TimeoutError:
            result = CommandResult(CommandStatus.FAILED, f"no answer in {self._timeout_s:g} s")
        except Exception as exc:
            result = CommandResult(CommandStatus.FAILED, repr(exc)[:200])
        await self._audit(command, "result", result)
        return result

    async def _audit(self, command: Command, stage: str, result: CommandResult | None) -> None:
        detail: dict[str, Any] = {"stage": stage, "value": command.value, "why": command.why}
        if result is not None:
            detail.update(result.to_json())
            self._log(command, result)
        row = AuditRow(self._clock.now(), command.who, f"command.{command.action}",
                       command.device, detail)
        fut = self._store.submit(WriteBatch(audit=[row]))
        if stage == "requested":
            await fut
            return
        try:
            await fut
        except StoreFailed as exc:
            log.error("command audit row not stored device=%s action=%s error=%r",
                      command.device, command.action, exc)

    def _log(self, command: Command, result: CommandResult) -> None:
        log.log(
            logging.INFO if result.done else logging.WARNING,
            "command device=%s action=%s value=%r who=%s status=%s detail=%r",
            command.device, command.action, command.value, command.who, result.status.value,
            result.detail,
        )
