"""The barrier gates of the end-to-end tests: a small site with four plate cameras on
loopback source addresses of their own, simulated barriers, and a running gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway.app import Gateway, Overrides
from gateway.config import load_site
from gateway.rules import RuleModule
from gateway.vehicles.registry import Registry
from simulators.gates import BarrierServer, PlateCamera

ROOT = Path(__file__).resolve().parent.parent
CONTROLLER_TOPIC = "furong/gates/gate-health-in"
SECRET = "s3cret-main-in"
# id, vendor, source address, extra keys
GATES: tuple[tuple[str, str, str, str], ...] = (
    ("gate-main-in", "vzenith", "127.0.0.21", "secret: {env: GATE_MAIN_IN_SECRET}"),
    ("gate-main-out", "vzenith", "127.0.0.22", "direction: out"),
    ("gate-parking-b1", "hikvision", "127.0.0.23", "area: main-parking-b1, reports_loop: true"),
    ("gate-suv-lot", "vzenith", "127.0.0.24", "area: suv-lot-north, no_api: true"),
)
REGISTRY_CSV = (
    "plate,owner_unit,class,gates,zones,valid_from,valid_until,note\n"
    "湘A12345,区政府办公室,official,*,main-parking-f1;main-parking-b1,,,\n"
    "湘A8B8B8,区财政局,staff,gate-main-in;gate-main-out,*,,,\n"
    "湘A66666,区城管局,suv,gate-main-in;gate-main-out;gate-suv-lot,suv-lot-north,,,\n"
    "湘A99999,-,barred,*,*,,,\n"
    "湘AD20000,来访单位,visitor,gate-main-in,*,2020-01-01,2020-01-31,expired\n"
)
COMMANDS = ("commands: {allow: [{action: open}, {action: close}, {action: hold_open},"
            " {action: release}], rate: {per_minute: 120, burst: 30}}")


def write_site(folder: Path, barriers: BarrierServer, *, heartbeat_s: float = 30.0,
               extra: str = "", broker: tuple[str, int] | None = None) -> Path:
    """The four gates; with `broker`, two heat detectors in a double-knock zone too."""
    lines = [
        "site: {id: furong-test, name: Furong test compound}",
        "gateway:",
        f"  data_dir: {folder / 'data'}",
        "  http: {host: 127.0.0.1, port: 0}",
        "buildings:",
        "  - id: main",
        "    name: Main compound",
        "    zones:",
        "      - {id: main-gatehouse, name: Gatehouse}",
        "      - {id: main-parking-f1, name: Official car park F1}",
        "      - {id: main-parking-b1, name: Official car park B1}",
        "      - {id: suv-lot-north, name: SUV lot}",
        "      - {id: main-office-a, name: Office building A, fire_triggers: 2}",
        "devices:",
    ]
    if broker is not None:
        shutil.copytree(ROOT / "config" / "profiles", folder / "profiles", dirs_exist_ok=True)
        lines[1:1] = ["brokers:", f"  devices: {{host: {broker[0]}, port: {broker[1]}}}"]
        lines += [f"  - {{id: hd-{n:02d}, kind: heat_detector, driver: mqtt, zone: main-office-a,"
                  f" broker: devices, topic: furong/fire/heat/hd-{n:02d}, detector_class: A1R}}"
                  for n in (1, 2)]
        # A gate controller on the site broker (a site-side MQTT bridge).
        lines.append("  - {driver: mqtt_gate, id: gate-health-in, kind: barrier_gate,"
                     f" zone: main-gatehouse, broker: devices, topic: {CONTROLLER_TOPIC},"
                     f" heartbeat_s: {heartbeat_s}, {COMMANDS}}}")
    for gate, vendor, source, keys in GATES:
        zone = "main-parking-b1" if "b1" in gate else (
            "suv-lot-north" if "suv" in gate else "main-gatehouse")
        api = "" if "no_api" in keys else f", gate_api: '{barriers.url(gate)}'"
        keys = keys.replace(", no_api: true", "")
        lines.append(f"  - {{driver: http_push, id: {gate}, kind: barrier_gate, zone: {zone},"
                     f" address: {source}, vendor: {vendor}, heartbeat_s: {heartbeat_s},"
                     f" {keys}{api}, {COMMANDS}}}")
    lines += ["gates:", "  listener: {host: 127.0.0.1, port: 0, max_picture_kb: 64, verify_s: 1.0}",
              "  refused_clear_s: 600", "  linkage_retry_s: 0.5", "  linkage_attempts: 3",
              *([extra] if extra else [])]
    path = folder / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    registry = Registry(folder / "data" / "vehicles.db")
    registry.import_csv(REGISTRY_CSV, actor="test", now=0.0)
    registry.close()
    return path


ENVIRON = {"GATE_MAIN_IN_SECRET": SECRET}


class GatewayWith(Gateway):
    """A gateway with extra (test-only) rule modules after its own."""

    extra_rules: Sequence[RuleModule] = ()

    def _rules(self) -> Any:
        registry = super()._rules()
        from gateway.rules import RuleRegistry

        return RuleRegistry([*registry.modules, *self.extra_rules])


@dataclass
class Compound:
    gateway: Gateway
    barriers: BarrierServer
    cameras: dict[str, PlateCamera]
    folder: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"

    def db(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.folder / "data" / "gateway.db")) as c:
            return c.execute(sql, args).fetchall()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(d) for (d,) in self.db(
            "SELECT data FROM events WHERE kind = ? ORDER BY time, seq", kind)]

    def audit(self, action_like: str) -> list[tuple[str, str, str, dict[str, Any]]]:
        return [(a, b, c, json.loads(d)) for a, b, c, d in self.db(
            "SELECT actor, action, target, detail FROM audit WHERE action LIKE ? ORDER BY id",
            action_like)]

    def active(self, rule: str) -> list[Any]:
        return [a for a in self.gateway.book.active() if a.rule == rule]

    async def post(self, path: str, doc: dict[str, Any]) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.post(self.api + path, json=doc) as r:
            return r.status, await r.json()

    async def get(self, path: str) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as s, s.get(self.api + path) as r:
            return r.status, await r.read()

    async def metrics(self) -> str:
        return (await self.get("/metrics"))[1].decode()


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def compound(folder: Path, *, extra_rules: Sequence[RuleModule] = (),
                   heartbeat_s: float = 30.0, extra: str = "",
                   broker: tuple[str, int] | None = None) -> AsyncIterator[Compound]:
    barriers = BarrierServer([g for g, *_ in GATES])
    await barriers.start()
    site_path = write_site(folder, barriers, heartbeat_s=heartbeat_s, extra=extra,
                           broker=broker)
    site = load_site(site_path)
    gateway_cls = type("TestGateway", (GatewayWith,), {"extra_rules": tuple(extra_rules)})
    gateway = gateway_cls(site, site_path, overrides=Overrides(http_port=0), environ=ENVIRON)
    task = asyncio.create_task(gateway.run(), name="gateway-under-test")
    cameras: dict[str, PlateCamera] = {}
    try:
        async with asyncio.timeout(10):
            await gateway.ready.wait()
            while gateway.gates is None or gateway.gates.push_port is None:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        listener = f"http://127.0.0.1:{gateway.gates.push_port}"
        for gate, vendor, source, keys in GATES:
            secret = SECRET if "secret" in keys else None
            cam = PlateCamera(gate, vendor, source, listener, secret=secret,
                              barrier=barriers.barriers[gate])
            cameras[gate] = await cam.__aenter__()
        yield Compound(gateway, barriers, cameras, folder)
    finally:
        for cam in cameras.values():
            await cam.__aexit__()
        gateway.request_shutdown()
        async with asyncio.timeout(10):
            await task
        await barriers.stop()
