"""`compound-gateway cameras discover`: the cameras that answer a WS-Discovery Probe, as
site-file entries to paste under `devices:`. With `--username` (and the password in the
environment variable `--password-env` names) each camera's make, model and sub-stream are
read over ONVIF; the entries carry the password only as that reference."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("cameras", help="the site's cameras: discover them; a snapshot now; "
                                       "a new reference view")
    verbs = p.add_subparsers(dest="verb", required=True)
    d = verbs.add_parser("discover", help="WS-Discovery Probe; print site-file entries (YAML)")
    d.add_argument("--timeout", type=float, default=3.0, metavar="S",
                   help="how long to wait for answers (default 3 s)")
    d.add_argument("--target", type=_host_port, metavar="HOST:PORT",
                   help="send the Probe to this address instead of the multicast group "
                        "(subnets without multicast)")
    d.add_argument("--username", help="the cameras' viewing account, to read each one")
    d.add_argument("--password-env", default="CAM_PASSWORD", metavar="VAR",
                   help="the environment variable holding its password (the entries name "
                        "it as their secret; default CAM_PASSWORD)")
    d.set_defaults(func=run)
    from gateway.camera_desk_cli import add_verbs

    add_verbs(verbs)


def run(args: argparse.Namespace) -> int:
    try:
        from drivers.onvif.discovery import render, scan, survey
    except ImportError as exc:
        print(f"cameras discover needs the camera extra ({exc.name} is missing): "
              "pip install '.[camera]'", file=sys.stderr)
        return 2
    password = os.environ.get(args.password_env) if args.username else None
    if args.username and password is None:
        print(f"cameras discover: ${args.password_env} is not set; reading the cameras "
              "without a password", file=sys.stderr)

    async def discover() -> tuple[int, str]:
        found = await scan(args.timeout, args.target)
        surveyed = await survey(found, args.username, password)
        return len(found), render(surveyed, args.username, args.password_env)

    try:
        count, text = asyncio.run(discover())
    except OSError as exc:
        print(f"cameras discover: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0 if count else 1
