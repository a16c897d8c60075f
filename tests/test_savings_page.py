"""The savings page in headless Chromium, against the savings routes reading a store on
disk that holds the simulated compound's history (meters and the outdoor sensor): every
measure of the shipped site with its months, its saving in yuan and its Guideline 14 fit,
the periods taken from the page's address; a measure the store cannot report says why."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from gateway.alerts import AlertBook
from gateway.api import make_app
from gateway.api.savings import add_savings_routes, parse_period
from gateway.config import load_site
from gateway.meters import SavingsDesk, meter_specs
from gateway.metrics import Metrics
from simulators.compound_meters import write_history
from tests.harness import ROOT
from tests.test_api import ok, served
from tests.test_desk_page import desk_in_chromium

SITE = ROOT / "config" / "site.yaml"
# Half a year of baseline and one month of reporting: enough for the page, quick to write.
PERIODS = "baseline=2025-07-01:2026-01-01&reporting=2026-01-01:2026-02-01"


def _measure(measure: str, tail: str = "") -> str:
    return f"document.querySelector('section[data-measure={json.dumps(measure)}] {tail}')"


async def test_the_savings_page_shows_each_measure_of_the_site(tmp_path: Path) -> None:
    await write_history(SITE, tmp_path / "data", dt.date(2025, 7, 1), dt.date(2026, 2, 1))
    site = load_site(SITE)
    specs = {s.meter: s for s in meter_specs(site, SITE.parent / "profiles")}
    desk = SavingsDesk(site, SITE, tmp_path / "data" / "gateway.db", specs)
    app = make_app(book=AlertBook(), metrics=Metrics(), health=ok)
    add_savings_routes(app, desk.report_async, desk.measures)
    async with served(app) as (url, _), desk_in_chromium(
            f"{url}/savings?{PERIODS}", tmp_path / "profile") as page:
        await page.until("document.body.classList.contains('loaded')", within=30)
        shown = await page.eval(
            "[...document.querySelectorAll('section.measure')].map(s => s.dataset.measure)")
        assert shown == [m.id for m in site.energy.measures]
        assert await page.eval("document.querySelectorAll('.error').length") == 0
        # The AC pumps: power, make-up water and gas, each with its month and its fit.
        parts = await page.eval(
            "[...document.querySelectorAll('section[data-measure=\"ac-pumps\"] .part')]"
            ".map(p => p.dataset.quantity)")
        assert parts == ["energy", "water", "gas"]
        months = await page.eval(
            "[...document.querySelectorAll('section[data-measure=\"led-lighting\"] "
            "tr[data-period]')].map(r => r.dataset.period)")
        assert months == ["2026-01"]
        fits = await page.eval("[...document.querySelectorAll('.fit')].map("
                               "f => f.dataset.acceptable)")
        yearly = await page.eval(f"{_measure('water-mains', '.yuan-year')}.textContent")
        periods = await page.eval(f"{_measure('led-lighting', '.periods')}.textContent")
    # What the page shows is what the API answers for the same periods.
    water = await desk.report_async("water-mains", parse_period("2025-07-01:2026-01-01"),
                                    parse_period("2026-01-01:2026-02-01"))
    assert f"¥{round(water['saving_yuan_per_year']):,}" in yearly
    assert fits == ["true"] * 5  # lighting, the AC pumps' three, the mains
    assert "2025-07-01" in periods and "2026-02-01" in periods


async def test_a_measure_the_store_cannot_report_says_why(tmp_path: Path) -> None:
    site = load_site(SITE)
    desk = SavingsDesk(site, SITE, tmp_path / "nowhere.db", {})
    app = make_app(book=AlertBook(), metrics=Metrics(), health=ok)
    add_savings_routes(app, desk.report_async, desk.measures)
    async with served(app) as (url, _), desk_in_chromium(
            f"{url}/savings", tmp_path / "profile") as page:
        await page.until("document.body.classList.contains('loaded')", within=30)
        errors = await page.eval(
            "[...document.querySelectorAll('.error')].map(e => e.textContent)")
    assert len(errors) == len(site.energy.measures)
    assert all("no store at" in e for e in errors)
