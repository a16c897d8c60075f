"""The alert book: dedupe by key, clears keep the id, drills, restore, and the live feed's
fan-out with its bound for slow readers."""

from __future__ import annotations

import asyncio

import pytest

from gateway.alerts import Alert, AlertBook, AlertChange, AlertSignal, AlertState
from gateway.events import Severity

T0 = 1_764_000_000.0


def signal(
    rule: str = "fire.static",
    source: str = "hd-main-03",
    *,
    active: bool = True,
    zone: str = "main-3f-east",
    severity: Severity = Severity.CRITICAL,
    summary: str = "Heat detector hd-main-03 at 61.2 °C (class A1R threshold 56 °C)",
) -> AlertSignal:
    return AlertSignal(rule, source, zone, severity, active, summary, {"temperature_c": 61.2})


def raised(book: AlertBook, sig: AlertSignal, now: float) -> Alert:
    change = book.apply(sig, now)
    assert change is not None
    assert change.change == "raised"
    return change.alert


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([True], ["raised"]),
        ([True, True, True], ["raised", None, None]),
        ([False], [None]),
        ([True, False], ["raised", "cleared"]),
        ([True, False, False], ["raised", "cleared", None]),
        ([True, False, True], ["raised", "cleared", "raised"]),
    ],
)
def test_transitions_by_key(steps: list[bool], expected: list[str | None]) -> None:
    book = AlertBook()
    got = []
    for i, active in enumerate(steps):
        change = book.apply(signal(active=active), T0 + i)
        got.append(None if change is None else change.change)
    assert got == expected


def test_raise_then_clear_keeps_the_id() -> None:
    book = AlertBook()
    alert = raised(book, signal(), T0)
    assert alert.state is AlertState.FIRING
    assert (alert.key, alert.raised_at, alert.cleared_at) == ("fire.static:hd-main-03", T0, None)
    assert alert.data == {"temperature_c": 61.2}
    assert alert.drill is False

    cleared = book.apply(signal(active=False, summary="back to 50.0 °C"), T0 + 90)
    assert cleared is not None
    assert cleared.change == "cleared"
    assert cleared.alert.id == alert.id
    assert cleared.alert.state is AlertState.RESOLVED
    assert cleared.alert.cleared_at == T0 + 90
    assert cleared.alert.raised_at == T0
    assert cleared.alert.summary == alert.summary
    assert cleared.alert.data["clear_summary"] == "back to 50.0 °C"

    assert book.active() == []
    assert book.get(alert.id) == cleared.alert
    assert book.recent() == [cleared.alert]  # one alert, in its latest state

    again = raised(book, signal(), T0 + 100)
    assert again.id != alert.id


def test_other_sources_and_rules_are_separate_alerts() -> None:
    book = AlertBook()
    a = raised(book, signal("fire.static", "hd-main-03"), T0)
    b = raised(book, signal("fire.static", "hd-main-04"), T0)
    c = raised(book, signal("fire.ror", "hd-main-03"), T0)
    assert len({a.id, b.id, c.id}) == 3
    assert len(book.active()) == 3


@pytest.mark.parametrize(
    ("test_zones", "zone", "drill"),
    [
        ((), "main-3f-east", False),
        (("health-1f",), "main-3f-east", False),
        (("health-1f", "main-3f-east"), "main-3f-east", True),
    ],
)
def test_drill_flag_from_test_zones(test_zones: tuple[str, ...], zone: str, drill: bool) -> None:
    book = AlertBook(test_zones=test_zones)
    assert raised(book, signal(zone=zone), T0).drill is drill


def test_active_orders_by_severity_then_newest() -> None:
    book = AlertBook()
    minor = raised(book, signal("fire.battery_low", severity=Severity.MINOR), T0 + 3)
    old_critical = raised(book, signal("fire.static", "hd-main-01"), T0)
    new_critical = raised(book, signal("fire.static", "hd-main-02"), T0 + 1)
    major = raised(book, signal("device.stale", severity=Severity.MAJOR), T0 + 2)
    assert book.active() == [new_critical, old_critical, major, minor]
    assert book.counts_by_severity() == {
        Severity.INFO: 0,
        Severity.MINOR: 1,
        Severity.MAJOR: 1,
        Severity.CRITICAL: 2,
    }
    book.apply(signal("fire.static", "hd-main-01", active=False), T0 + 5)
    assert book.counts_by_severity()[Severity.CRITICAL] == 1


def test_recent_is_newest_first_and_bounded() -> None:
    book = AlertBook(history=3)
    alerts = [raised(book, signal(source=f"hd-main-{i:02}"), T0 + i) for i in range(5)]
    assert book.recent() == [alerts[4], alerts[3], alerts[2]]
    assert book.recent(limit=2) == [alerts[4], alerts[3]]
    # Out of the ring but still firing: still found, still active, still deduplicated.
    assert book.get(alerts[0].id) == alerts[0]
    assert len(book.active()) == 5
    assert book.apply(signal(source="hd-main-00"), T0 + 10) is None
    assert book.get("01NOSUCHALERTAAAAAAAAAAAAA") is None


def test_restore_dedupes_and_clears_with_the_stored_id() -> None:
    stored_firing = Alert(
        id="01KAZ0000000000000000000AB",
        key="fire.static:hd-main-03",
        rule="fire.static",
        source="hd-main-03",
        zone="main-3f-east",
        severity=Severity.CRITICAL,
        state=AlertState.FIRING,
        raised_at=T0 - 600,
        cleared_at=None,
        summary="Heat detector hd-main-03 at 58.0 °C (class A1R threshold 56 °C)",
        data={"temperature_c": 58.0},
    )
    stored_resolved = Alert(
        id="01KAZ0000000000000000000AA",
        key="fire.fault:hd-main-03",
        rule="fire.fault",
        source="hd-main-03",
        zone="main-3f-east",
        severity=Severity.MAJOR,
        state=AlertState.RESOLVED,
        raised_at=T0 - 900,
        cleared_at=T0 - 800,
        summary="Heat detector hd-main-03 reports fault dirty",
        data={"code": "dirty"},
    )
    book = AlertBook()
    book.restore([stored_firing, stored_resolved])
    assert book.active() == [stored_firing]
    assert book.recent() == [stored_firing, stored_resolved]

    assert book.apply(signal(), T0) is None
    change = book.apply(signal(active=False), T0 + 1)
    assert change is not None
    assert change.alert.id == stored_firing.id
    assert change.alert.state is AlertState.RESOLVED
    # A resolved alert from the store is history, not something to dedupe against.
    assert raised(book, signal("fire.fault", severity=Severity.MAJOR), T0 + 2).id != (
        stored_resolved.id
    )


async def test_apply_does_not_publish_and_publish_fans_out() -> None:
    book = AlertBook()
    desk = book.subscribe()
    wall = book.subscribe()
    assert book.subscriber_count == 2
    change = book.apply(signal(), T0)
    assert change is not None
    assert desk.pending() == 0
    assert wall.pending() == 0

    book.publish(change)
    assert await asyncio.wait_for(anext(desk), timeout=2) == change
    assert await asyncio.wait_for(anext(wall), timeout=2) == change


async def test_reader_waits_for_the_next_change() -> None:
    book = AlertBook()
    received: list[AlertChange] = []

    async def read() -> None:
        async with book.subscribe() as subscription:
            async for change in subscription:
                received.append(change)
                if len(received) == 2:
                    return

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)  # let the reader subscribe and block
    raise_ = book.apply(signal(), T0)
    clear = book.apply(signal(active=False), T0 + 1)
    assert raise_ is not None
    assert clear is not None
    book.publish(raise_)
    book.publish(clear)
    await asyncio.wait_for(reader, timeout=2)
    assert [c.change for c in received] == ["raised", "cleared"]
    assert book.subscriber_count == 0  # leaving `async with` unsubscribed


async def test_slow_subscriber_loses_its_oldest_and_counts_them() -> None:
    book = AlertBook()
    slow = book.subscribe(bound=2)
    fast = book.subscribe(bound=100)
    changes = []
    for i in range(5):
        change = book.apply(signal(source=f"hd-main-{i:02}"), T0 + i)
        assert change is not None
        changes.append(change)
        book.publish(change)  # never waits, however far behind `slow` is

    assert slow.dropped == 3
    assert fast.dropped == 0
    assert book.dropped_changes == 3
    assert [await asyncio.wait_for(anext(slow), timeout=2) for _ in range(2)] == changes[3:]
    assert [await asyncio.wait_for(anext(fast), timeout=2) for _ in range(5)] == changes


async def test_close_ends_iteration_and_stops_delivery() -> None:
    book = AlertBook()
    subscription = book.subscribe()

    async def drain() -> list[AlertChange]:
        return [change async for change in subscription]

    reader = asyncio.create_task(drain())
    await asyncio.sleep(0)
    subscription.close()
    assert await asyncio.wait_for(reader, timeout=2) == []
    assert book.subscriber_count == 0
    change = book.apply(signal(), T0)
    assert change is not None
    book.publish(change)
    assert subscription.pending() == 0


def test_subscription_bound_must_hold_a_change() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AlertBook().subscribe(bound=0)
