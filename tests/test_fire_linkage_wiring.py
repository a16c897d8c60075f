"""The shipped site file's rule modules, as the daemon wires them: two heat detectors in
alarm in a double-knock zone confirm a fire (the fire model), and the confirmed fire sends
every barrier a `hold_open` (the gate linkage). One alarm alone confirms nothing and opens
nothing. Pure: the rules of `Gateway._rules()`, no network."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.alerts import AlertSignal
from gateway.app import Gateway, Overrides
from gateway.clock import ManualClock
from gateway.commands import Command
from gateway.config import load_site
from gateway.events import Event

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "config" / "site.yaml"
T0 = 1_780_000_000.0


def alarm(source: str, seq: int, t: float) -> Event:
    return Event("fire.detector.alarm", source, seq=seq, time=t, zone="main-office-a")


async def test_two_detectors_confirm_a_fire_and_every_barrier_is_opened(
    tmp_path: Path,
) -> None:
    site = load_site(SITE)
    clock = ManualClock(T0)
    gateway = Gateway(site, SITE, overrides=Overrides(data_dir=tmp_path), clock=clock)
    gateway.store.open(asyncio.get_running_loop())  # the water rules read their history
    try:
        rules = gateway._rules()
    finally:
        await gateway.store.close()
    gates = sorted(d.id for d in site.devices_of("http_push"))
    assert len(gates) == 4

    first = rules.observe(alarm("hd-main-01", 1, T0), T0)
    assert [s.rule for s in first if isinstance(s, AlertSignal)] == ["fire.alarm"]
    assert not [v for v in first if isinstance(v, Command)]

    second = rules.observe(alarm("hd-main-02", 1, T0 + 5), T0 + 5)
    confirmed = [s for s in second if isinstance(s, AlertSignal) and s.rule == "fire.confirmed"]
    assert len(confirmed) == 1 and confirmed[0].active
    assert confirmed[0].zone == "main-office-a"
    assert confirmed[0].data["building"] == "main" and confirmed[0].data["drill"] is False
    opens = [v for v in second if isinstance(v, Command)]
    assert sorted(c.device for c in opens) == gates
    assert {c.action for c in opens} == {"hold_open"}  # held until the desk releases
    # The commands come after the confirmation that caused them.
    assert second.index(confirmed[0]) < min(second.index(c) for c in opens)
