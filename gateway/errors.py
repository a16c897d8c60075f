"""The gateway's error tree.

    GatewayError
    +-- ConfigError            the site file or a secret is wrong; refuse to start
    +-- DeviceError            a device link failed; its supervisor restarts it
    |   +-- Unreachable        no TCP/serial/broker connection
    |   +-- ProtocolError      the device said something we cannot parse
    |   +-- AuthError          the device refused our credentials
    +-- PayloadRejected        one message was malformed; counted, logged once, dropped
    +-- DeliveryError          a forwarder could not hand over an outbox row
    +-- StoreFailed            a commit failed, or came after one that failed; nothing
                               derived from it may be acknowledged, sent or shown
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The site configuration or a secret is invalid."""


class DeviceError(GatewayError):
    """A device link failed."""


class Unreachable(DeviceError):
    """The device or broker could not be reached."""


class SessionTakenOver(Unreachable):
    """Another client connected with this link's client id and the broker gave it our
    session: retrying fast would make the two flap."""


class ProtocolError(DeviceError):
    """The device answered with something we cannot parse."""


class AuthError(DeviceError):
    """The device refused our credentials."""


class PayloadRejected(GatewayError):
    """One message was malformed; `reason` is a bounded label for metrics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DeliveryError(GatewayError):
    """A forwarder could not hand an outbox row to its target."""


class StoreFailed(GatewayError):
    """A store batch was not committed: its own write failed (full disk, I/O error, a
    read-only file), or an earlier one did and the core has not restarted since."""
