"""`compound-gateway vehicles import|export|audit`: the registry from the command line.

The registry lives in the site's data folder (`vehicles.db`); an import is all or
nothing and leaves an audit row per change, under the operator's name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

from gateway.vehicles.registry import DB_NAME, Registry, RegistryError

DEFAULT_SITE = "config/site.yaml"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("vehicles", help="the vehicle registry: import, export, audit")
    p.add_argument("--site", default=DEFAULT_SITE, help="site file (its data folder and zone)")
    p.add_argument("--data-dir", help="override gateway.data_dir")
    verbs = p.add_subparsers(dest="verb", required=True)
    imp = verbs.add_parser("import", help="take a CSV: all rows or none")
    imp.add_argument("csv", help="the registry CSV (plate,owner_unit,class,gates,zones,...)")
    imp.add_argument("--merge", action="store_true",
                     help="add and change only; keep plates the file does not list")
    imp.add_argument("--actor", help="who imports (default: the login name)")
    exp = verbs.add_parser("export", help="the registry as CSV")
    exp.add_argument("csv", nargs="?", help="file to write (default: standard output)")
    aud = verbs.add_parser("audit", help="the newest audit rows, as JSON lines")
    aud.add_argument("--plate", help="only this plate")
    aud.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=run)


def _registry(args: argparse.Namespace) -> Registry:
    from gateway.config import load_site

    site = load_site(args.site)
    folder = Path(args.data_dir) if args.data_dir else Path(site.gateway.data_dir)
    return Registry(folder / DB_NAME, timezone=site.site.timezone)


def run(args: argparse.Namespace) -> int:
    from gateway.errors import ConfigError

    try:
        registry = _registry(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        if args.verb == "import":
            text = Path(args.csv).read_text(encoding="utf-8")
            actor = f"{args.actor or getpass.getuser()} via cli"
            result = registry.import_csv(text, actor=actor, now=time.time(),
                                         replace_all=not args.merge)
            print(f"{args.csv}: imported: {result.added} added, {result.changed} changed, "
                  f"{result.removed} removed, {result.unchanged} unchanged; "
                  f"{len(registry)} vehicles registered")
        elif args.verb == "export":
            text = registry.export_csv()
            if args.csv:
                Path(args.csv).write_text(text, encoding="utf-8")
            else:
                sys.stdout.write(text)
        else:
            for entry in registry.audit(args.limit, args.plate):
                at = dt.datetime.fromtimestamp(entry.at, registry.tz).isoformat(timespec="seconds")
                print(json.dumps({"at": at, "actor": entry.actor, "action": entry.action,
                                  "plate": entry.plate, "detail": entry.detail},
                                 ensure_ascii=False))
    except (RegistryError, OSError, UnicodeDecodeError) as exc:
        print(f"{getattr(args, 'csv', '') or 'registry'}: {exc}", file=sys.stderr)
        return 1
    finally:
        registry.close()
    return 0
