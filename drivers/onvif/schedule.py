"""When to renew a PullPoint subscription, how long one long poll may wait, and how far a
camera's clock is from the gateway's. Pure: times are passed in."""

from __future__ import annotations

import datetime as dt
from typing import Final

# Renewed at half its life, so one failed renewal still leaves half the time to retry
# before the camera drops it (cameras cannot list the subscriptions they hold).
RENEW_AT: Final = 0.5
# A camera that answers a lifetime shorter than this is renewed this often anyway, not in
# a busy loop.
MIN_RENEW_S: Final = 0.5


def renew_in(requested_s: float, current: dt.datetime | None,
             termination: dt.datetime | None) -> float:
    """Seconds until the subscription should be renewed. The lifetime is read on the
    camera's own clock (TerminationTime - CurrentTime), so a drifting clock does not move
    it; without both times, the lifetime asked for is assumed."""
    life = requested_s
    if (current is not None and termination is not None
            and (current.tzinfo is None) == (termination.tzinfo is None)):
        granted = (termination - current).total_seconds()
        if granted > 0:
            life = granted
    return max(MIN_RENEW_S, life * RENEW_AT)


def poll_for(poll_s: float, renew_at: float, now: float) -> float:
    """How long the next PullMessages may wait on the camera: never past the renewal."""
    return max(0.0, min(poll_s, renew_at - now))


def drift_s(camera_utc: dt.datetime, sent: float, received: float) -> float:
    """The camera's clock minus the gateway's, in seconds, against the middle of the
    request's round trip (`sent`, `received`: the gateway's UTC epoch seconds). Cameras
    answer in whole seconds, so a drift under a second is no drift."""
    if camera_utc.tzinfo is None:
        camera_utc = camera_utc.replace(tzinfo=dt.UTC)
    return camera_utc.timestamp() - (sent + received) / 2


def iso_duration(seconds: float) -> str:
    """An xs:duration for InitialTerminationTime / Renew, in whole seconds (at least 1)."""
    return f"PT{max(1, round(seconds))}S"
