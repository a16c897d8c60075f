"""The whole simulated compound in one process: `compound-gateway simulate`.

Today the heat-detector fleet; other device families join the task group here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

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
    return parser


async def run_compound(args: argparse.Namespace, stop: asyncio.Event) -> None:
    host, port = args.broker
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
        if args.fire:
            await fleet.wait_connected(timeout=30)
            for device, mode in args.fire:
                fleet.fire(device, mode)
        await stop.wait()
        running.cancel()
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
