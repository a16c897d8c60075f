"""The whole simulated compound in one process: `compound-gateway simulate`.

The heat-detector fleet, and with --lifts the site's lift boxes and fire panel gateway;
other device families join the task group here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.errors import ConfigError
from simulators.heat_detectors import FIRE_MODES, HeatDetectorFleet

_log = logging.getLogger(__name__)


def parse_broker(text: str) -> tuple[str, int]:
    """Broker address from HOST:PORT, or HOST alone (port 1883); [::1]:1883 for IPv6."""
    host, sep, port = text.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        return text, 1883
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"bad broker port in {text!r}")
    return host.strip("[]"), int(port)


def parse_fire(text: str) -> tuple[str, str]:
    """A fire to start: ID or ID:MODE, e.g. hd-main-03:fast."""
    device, _, mode = text.partition(":")
    mode = mode or "static"
    if mode not in FIRE_MODES:
        raise argparse.ArgumentTypeError(f"fire mode must be one of {FIRE_MODES}")
    return device, mode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compound-gateway simulate", description="Run the simulated Furong compound."
    )
    parser.add_argument(
        "--broker", type=parse_broker, default=("127.0.0.1", 1883), metavar="HOST:PORT"
    )
    parser.add_argument("--site", help="site file; its heat_detector devices form the fleet")
    parser.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="routine report interval for every detector (default: site file)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per real second"
    )
    parser.add_argument(
        "--fire",
        type=parse_fire,
        action="append",
        default=[],
        metavar="ID[:MODE]",
        help="start a fire at this detector (repeatable)",
    )
    lifts = parser.add_argument_group(
        "lifts and fire panel",
        "serve the site file's lift boxes and fire panel gateway as simulated Modbus TCP "
        "servers on loopback, for a gateway run on the site file --lifts-site writes")
    lifts.add_argument("--lifts", action="store_true",
                       help="also simulate the lifts and the fire panel (needs --site)")
    lifts.add_argument("--lifts-site", type=Path, metavar="FILE",
                       help="write the site file with those boxes' addresses on loopback")
    lifts.add_argument("--lift-step", type=_step, action="append", default=[],
                       metavar="'SECONDS LINE'",
                       help="a timed control line, e.g. '20 trap lift-main-05', "
                            "'30 isolate sd-m-office-a', '40 recall on' (repeatable)")
    lifts.add_argument("--lift-scenario", action="store_true",
                       help="play the demo's steps: a trapped passenger, a detector fault")
    return parser


def _step(text: str) -> tuple[float, str]:
    from simulators.compound_lifts import parse_step

    try:
        return parse_step(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def _lifts(args: argparse.Namespace) -> None:
    if not args.lifts:
        return
    from simulators.compound_lifts import SCENARIO, serve_site

    steps = list(args.lift_step) + (list(SCENARIO) if args.lift_scenario else [])
    await serve_site(Path(args.site), speed=args.time_scale, steps=steps,
                     site_out=args.lifts_site)


def _lifts_only(args: argparse.Namespace) -> bool:
    """--lifts on a site file without heat detectors: the boxes alone, no broker needed."""
    if not args.lifts:
        return False
    if not args.site:
        raise ConfigError("--lifts needs --site: the lifts and the panel come from it")
    from gateway.config import load_site

    site = load_site(args.site)
    return not any(d.kind == "heat_detector" and d.enabled for d in site.devices)


async def run_compound(args: argparse.Namespace, stop: asyncio.Event) -> None:
    host, port = args.broker
    if _lifts_only(args):
        async with asyncio.TaskGroup() as tasks:
            lifts_only = tasks.create_task(_lifts(args), name="sim-lifts")
            await stop.wait()
            lifts_only.cancel()
        return
    fleet = HeatDetectorFleet(
        host,
        port,
        site_file=args.site,
        interval_s=args.interval,
        seed=args.seed,
        time_scale=args.time_scale,
    )
    unknown = [device for device, _mode in args.fire if device not in fleet.detectors]
    if unknown:
        raise ConfigError(f"no heat detector {', '.join(unknown)} in the fleet")
    _log.info("event=simulate_start broker=%s:%d detectors=%d", host, port, len(fleet.detectors))
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(fleet.run(), name="sim-heat-detectors")
        lifts = tasks.create_task(_lifts(args), name="sim-lifts")
        if args.fire:
            await fleet.wait_connected(timeout=30)
            for device, mode in args.fire:
                fleet.fire(device, mode)
        await stop.wait()
        running.cancel()
        lifts.cancel()
    _log.info("event=simulate_stop published=%d", fleet.published)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_compound(args, stop)

    code = 0
    try:
        asyncio.run(_main())
    except* (ConfigError, ValueError) as group:
        print(f"simulate: {group.exceptions[0]}", file=sys.stderr)
        code = 2
    except* TimeoutError:
        print(f"simulate: no broker at {args.broker[0]}:{args.broker[1]}", file=sys.stderr)
        code = 1
    return code
