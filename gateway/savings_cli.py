"""`compound-gateway savings`: a measure's savings report from the store, as the month
table of the compound's report or as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.config import load_site
from gateway.errors import ConfigError
from gateway.meters import SavingsDesk, meter_specs


def main_savings(args: argparse.Namespace) -> int:
    from gateway.api.savings import parse_period
    from gateway.savings_report import render

    try:
        site_path = Path(args.site)
        site = load_site(site_path)
        data_dir = Path(args.data_dir) if args.data_dir else Path(site.gateway.data_dir)
        specs = {s.meter: s for s in meter_specs(site, site_path.parent / "profiles")}
        desk = SavingsDesk(site, site_path, data_dir / "gateway.db", specs)
        if args.measure is None:
            for m in desk.measures():
                print(f"{m['id']:<20} {m['name']}  (meters: {', '.join(m['meters'])})")
            return 0
        baseline = parse_period(args.baseline) if args.baseline else None
        reporting = parse_period(args.reporting) if args.reporting else None
        data = desk.report(args.measure, baseline, reporting,
                           Path(args.temperature) if args.temperature else None)
    except (ConfigError, ValueError) as exc:
        print(f"savings: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(render(data), end="")
    return 0
