"""`compound-gateway cameras snapshot|reference <camera>`: the desk's camera actions from
the command line, asked of the running daemon over its desk API (it holds the cameras'
keyframes and picture state), audited there under the operator's name like the desk's.

    compound-gateway cameras snapshot cam-007 --reason "a van at the east door"
    compound-gateway cameras reference cam-007 --reason "re-aimed at the gate"

It prints the answer (JSON); for a snapshot, the URL of the JPEG on the desk API."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import ipaddress
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_SITE = "config/site.yaml"
TIMEOUT_S = 15.0  # a snapshot waits up to 5 s for the camera's next keyframe


def add_verbs(verbs: Any) -> None:
    """`cameras snapshot` and `cameras reference`, beside `cameras discover`."""
    for action, about in (("snapshot", "a camera's snapshot now"),
                          ("reference", "re-take a moved camera's reference view")):
        p = verbs.add_parser(action, help=about)
        p.add_argument("camera", help="the camera's id in the site file")
        p.add_argument("--reason", required=True, help="why (audited)")
        p.add_argument("--operator", help="who asks (default: the login name)")
        p.add_argument("--site", default=DEFAULT_SITE, help="site file (the desk API's address)")
        p.add_argument("--api", help="the desk API's base URL (default: from the site file)")
        p.set_defaults(func=run, action=action)


def _api(args: argparse.Namespace) -> str:
    if args.api:
        base = str(args.api).rstrip("/")
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise ValueError(f"--api {base!r}: not an http(s) URL")
        return base
    from gateway.config import load_site

    http = load_site(args.site).gateway.http
    host = http.host
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified:  # bound to every address
            host = "127.0.0.1"
    return f"http://{host}:{http.port}"


def run(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError

    try:
        base = _api(args)
    except (ConfigError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    camera = urllib.parse.quote(args.camera, safe="")
    body = json.dumps({"reason": args.reason,
                       "operator": f"{args.operator or getpass.getuser()} (cli)"}).encode()
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked in _api)
        f"{base}/api/cameras/{camera}/{args.action}", data=body,
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:  # noqa: S310
            answer = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        print(f"{args.camera}: {exc.code} {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"{base}: the gateway did not answer: {exc}", file=sys.stderr)
        return 1
    if args.action == "snapshot" and isinstance(answer, dict) and "url" in answer:
        answer["url"] = base + str(answer["url"])
    print(json.dumps(answer, ensure_ascii=False))
    return 0
