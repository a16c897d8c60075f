"""The desk page's lifts and standing fire risks in headless Chromium, against the daemon
reading the simulated lift boxes and fire panel over loopback Modbus."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_desk_page import desk_in_chromium
from tests.test_lifts_gateway import _compound


def _lift(lift: str, cell: str = "") -> str:
    return f"document.querySelector('#lift-rows tr[data-lift={json.dumps(lift)}] {cell}')"


async def test_the_desk_shows_a_trapped_lift_and_the_standing_fire_risks(
        tmp_path: Path) -> None:
    async with _compound(tmp_path) as (gw, fleet, panel):
        lift1, lift2 = fleet.lifts["lift-1"], fleet.lifts["lift-2"]
        lift2.floor = -1  # B1 on the Otis box
        lift2.write()
        url = f"http://127.0.0.1:{gw.http_port}/"
        async with desk_in_chromium(url, tmp_path / "profile") as page:
            # Every lift of the site, with its building, before anything happens.
            await page.until("document.querySelectorAll('#lift-rows tr').length === 3")
            await page.until(f"{_lift('lift-2', '.floor')}?.textContent === 'B1'")
            assert await page.eval(f"{_lift('lift-3')}.children[1].textContent") \
                == "public health building"
            assert await page.eval("document.getElementById('standing').hidden") is False
            assert await page.eval("document.querySelector('#isolations li.none') !== null")
            state = await page.eval(f"{_lift('lift-1', '.state')}.textContent")
            assert "正常" in state and "Normal" in state

            lift1.trap()
            panel.isolate(3)
            panel.set_panel("bus_fault")
            trapped = f"{_lift('lift-1')}?.classList.contains('trapped')"
            await page.until(trapped, within=30)
            state = await page.eval(f"{_lift('lift-1', '.state')}.textContent")
            door = await page.eval(f"{_lift('lift-1', '.door')}.textContent")
            # The entrapment is in the alert list too, and on top of the lifts' own list.
            await page.until("[...document.querySelectorAll('#rows tr')].some("
                             "r => r.textContent.includes('电梯困人'))")
            await page.until("!!document.querySelector('#isolations li[data-point=\"sd-h-01\"]')")
            isolated = await page.eval(
                "document.querySelector('#isolations li[data-point=\"sd-h-01\"]').textContent")
            await page.until(
                "!!document.querySelector('#panel-faults li[data-rule=\"fire.panel.bus_fault\"]')")
            fault = await page.eval("document.querySelector('#panel-faults li').textContent")
            assert "TRAPPED" in state and "困人" in state
            assert "关" in door and "between landings" in door
            assert "health offices" in isolated and "前" in isolated and "ago" in isolated
            assert "消防总线故障" in fault and "fire-panel" in fault

            # Freed at a landing: the row is a plain lift again; the risks go when cleared.
            lift1.release()
            panel.isolate(3, on=False)
            panel.set_panel("bus_fault", on=False)
            await page.until(f"!({trapped})", within=30)
            await page.until("document.querySelector('#isolations li.none') !== null")
            await page.until("document.querySelector('#panel-faults li.none') !== null")
            assert "elevator.entrapment:lift-1" not in {a.key for a in gw.book.active()}

            # A box that stops answering: its row says so, not its last floor as if live.
            fleet.lifts["lift-3"].meter.faults.dead = True
            await page.until(f"{_lift('lift-3')}?.classList.contains('silent')", within=30)
            state = await page.eval(f"{_lift('lift-3', '.state')}.textContent")
            assert "失联" in state and "Silent" in state
            assert await page.eval(f"{_lift('lift-3')}.classList.contains('unavailable')")
