"""`compound-gateway`: run the daemon, check a site file, run the demo or the simulators."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

DEFAULT_SITE = "config/site.yaml"


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        stream=sys.stderr,
    )
    # aiohttp's access log and the MQTT client's chatter are not the daemon's story.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import main_check_config

    return main_check_config(args.site)


def _cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import Gateway, Overrides
    from gateway.config import load_site
    from gateway.errors import ConfigError

    try:
        site = load_site(args.site)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    _setup_logging(args.log_level or site.gateway.log_level)
    overrides = Overrides(
        broker=args.broker,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        http_port=args.http_port,
    )
    try:
        gateway = Gateway(site, Path(args.site), overrides=overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        asyncio.run(gateway.run())
    except ConfigError as exc:  # e.g. another gateway holds the data folder
        print(exc, file=sys.stderr)
        return 2
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    _setup_logging(args.log_level or "info")
    return asyncio.run(run_demo(Path(args.site), Path(args.data_dir), args.http_port,
                                args.cameras))


def _cmd_savings(args: argparse.Namespace) -> int:
    from gateway.savings_cli import main_savings

    return main_savings(args)


def _cmd_simulate(args: argparse.Namespace, rest: list[str]) -> int:
    from simulators.compound import main as simulate_main

    return simulate_main(rest)


def _cmd_lift_report(args: argparse.Namespace) -> int:
    import json

    from gateway.config import load_site
    from gateway.errors import ConfigError
    from gateway.lifts import report

    try:
        site = load_site(args.site)
        db = Path(args.data_dir or site.gateway.data_dir) / "gateway.db"
        if not db.is_file():
            raise ConfigError(f"no store at {db}")
        body = report(site, db, args.firm, args.month)
    except (ConfigError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(body, ensure_ascii=False, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="compound-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="run the gateway daemon")
    p_run.add_argument("--site", default=DEFAULT_SITE, help="site file (YAML)")
    p_run.add_argument("--data-dir", help="override gateway.data_dir")
    p_run.add_argument("--http-port", type=int, help="override gateway.http.port")
    p_run.add_argument("--broker", type=_host_port, help="point every broker at HOST:PORT")
    p_run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p_run.set_defaults(func=_cmd_run)

    p_check = sub.add_parser("check-config", help="validate a site file; exit 1 on any error")
    p_check.add_argument("site", nargs="?", default=DEFAULT_SITE)
    p_check.set_defaults(func=_cmd_check_config)

    p_demo = sub.add_parser("demo", help="the simulated compound plus the gateway, on localhost")
    p_demo.add_argument("--site", default=DEFAULT_SITE)
    p_demo.add_argument("--data-dir", default="data/demo")
    p_demo.add_argument("--http-port", type=int, default=8080)
    p_demo.add_argument("--cameras", type=int, default=10, help="simulated cameras (up to 100)")
    p_demo.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p_demo.set_defaults(func=_cmd_demo)

    p_lifts = sub.add_parser("lift-report", help="a firm's monthly lift compliance report (JSON)")
    p_lifts.add_argument("--site", default=DEFAULT_SITE)
    p_lifts.add_argument("--data-dir", help="override gateway.data_dir")
    p_lifts.add_argument("--firm", required=True, help="a key of rules.elevator.firms")
    p_lifts.add_argument("--month", required=True, help="YYYY-MM, in the site's time zone")
    p_lifts.set_defaults(func=_cmd_lift_report)

    sub.add_parser("simulate", help="run the simulated compound against a broker",
                   add_help=False)

    from gateway.vehicles.cli import add_parser as add_vehicles_parser

    add_vehicles_parser(sub)
    from gateway.camera_cli import add_parser as add_camera_parser

    add_camera_parser(sub)
    p_savings = sub.add_parser("savings", help="a measure's savings report from the store")
    p_savings.add_argument("measure", nargs="?", help="the measure's id (none: list them)")
    p_savings.add_argument("--site", default=DEFAULT_SITE)
    p_savings.add_argument("--data-dir", help="override gateway.data_dir")
    p_savings.add_argument("--baseline", metavar="START:END", help="ISO dates, END excluded")
    p_savings.add_argument("--reporting", metavar="START:END", help="ISO dates, END excluded")
    p_savings.add_argument("--temperature", metavar="CSV", help="daily mean temperatures")
    p_savings.add_argument("--json", action="store_true", help="JSON, as the API answers")
    p_savings.set_defaults(func=_cmd_savings)

    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        return _cmd_simulate(args, rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
