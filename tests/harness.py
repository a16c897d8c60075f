"""Shared pieces of the end-to-end tests: a small site file, the gateway in-process, a
detector that publishes reports, and a desk-side subscriber that collects alerts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.app import Gateway, Overrides
from gateway.config import load_site
from gateway.errors import DeviceError
from gateway.mqtt_loop import MqttLink
from tests.mqtt_client import mqtt_client

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "furong/gw1"


def write_site(
    folder: Path,
    *,
    devices: tuple[str, int],
    upstream: tuple[str, int] | None = None,
    detectors: int = 4,
    keepalive_s: int = 12,
    publish_timeout_s: float = 5.0,
    heartbeat_s: float = 30.0,
    webhook: str | None = None,
    drill_detectors: frozenset[int] = frozenset(),
    fire_rules: str = "{}",
) -> Path:
    """A site with `detectors` heat detectors on the `devices` broker and one forwarding
    target on `upstream` (the same broker when not given)."""
    up = upstream or devices
    shutil.copytree(ROOT / "config" / "profiles", folder / "profiles", dirs_exist_ok=True)
    lines = [
        "site: {id: furong-test, name: Furong test compound}",
        "gateway:",
        f"  data_dir: {folder / 'data'}",
        "  http: {host: 127.0.0.1, port: 0}",
        f"  topic_prefix: {PREFIX}",
        "brokers:",
        f"  devices: {{host: {devices[0]}, port: {devices[1]}, keepalive_s: {keepalive_s}}}",
        f"  upstream: {{host: {up[0]}, port: {up[1]}, keepalive_s: {keepalive_s}, "
        f"publish_timeout_s: {publish_timeout_s}}}",
        "buildings:",
        "  - id: main",
        "    name: Main compound",
        "    zones:",
        "      - {id: main-office-a, name: Office building A}",
        "      - {id: main-drill, name: Drill floor, test_mode: true}",
        "devices:",
    ]
    for n in range(1, detectors + 1):
        zone = "main-drill" if n in drill_detectors else "main-office-a"
        lines.append(
            f"  - {{id: hd-{n:02d}, kind: heat_detector, driver: mqtt, zone: {zone}, "
            f"broker: devices, topic: furong/fire/heat/hd-{n:02d}, detector_class: A1R, "
            f"heartbeat_s: {heartbeat_s}}}"
        )
    lines += [
        "forwarding:",
        "  - {kind: mqtt, id: desk, broker: upstream}",
        *([f"  - {{kind: webhook, id: ops, url: '{webhook}', "
           "token: {env: TEST_WEBHOOK_TOKEN}, timeout_s: 2}"] if webhook else []),
        "rules:",
        f"  fire: {fire_rules}",
        "retention: {}",
    ]
    path = folder / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.asynccontextmanager
async def running_gateway(site_path: Path) -> AsyncIterator[Gateway]:
    site = load_site(site_path)
    gateway = Gateway(site, site_path, overrides=Overrides(http_port=0))
    task = asyncio.create_task(gateway.run(), name="gateway-under-test")
    try:
        async with asyncio.timeout(10):
            await gateway.ready.wait()
            while any(s.state.value != "up" for s in gateway.supervisors):
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield gateway
    finally:
        gateway.request_shutdown()
        async with asyncio.timeout(10):
            await task


def report(seq: int, temp_c: float, *, alarm: bool = False, fault: str | None = None,
           battery_pct: int = 90) -> bytes:
    return json.dumps({"seq": seq, "ts": time.time(), "temp_c": temp_c, "alarm": alarm,
                       "fault": fault, "battery_pct": battery_pct}).encode()


@dataclass
class Detectors:
    """Publishes detector reports the way the compound's detectors do (QoS 1 for alarms)."""

    client: MqttLink
    seq: dict[str, int] = field(default_factory=dict)
    flags: dict[str, tuple[bool, Any]] = field(default_factory=dict)

    async def send(self, device: str, temp_c: float, **flags: Any) -> None:
        n = self.seq.get(device, 0) + 1
        self.seq[device] = n
        state = (bool(flags.get("alarm")), flags.get("fault"))
        # As the detectors do: QoS 1 while in alarm or fault, and for the report that
        # changes a flag (a clear must not be lost either); routine reports at QoS 0.
        qos = 1 if any(state) or state != self.flags.get(device, (False, None)) else 0
        self.flags[device] = state
        await self.client.publish(f"furong/fire/heat/{device}", report(n, temp_c, **flags),
                                  qos=qos)

    async def send_raw(self, device: str, payload: bytes, qos: int = 1) -> None:
        """A message as given (poison, a replay), on the device's topic."""
        await self.client.publish(f"furong/fire/heat/{device}", payload, qos=qos)


@contextlib.asynccontextmanager
async def detectors(host: str, port: int) -> AsyncIterator[Detectors]:
    async with mqtt_client(host, port, "test-detectors") as client:
        yield Detectors(client)


class DeskSubscriber:
    """What the security desk's systems hear: a persistent QoS 1 session on the alert topics
    that keeps reconnecting, so nothing published while it was away is missed."""

    def __init__(self, host: str, port: int, topic: str = f"{PREFIX}/alert/#") -> None:
        self.host, self.port, self.topic = host, port, topic
        self.messages: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                async with mqtt_client(self.host, self.port, "desk-under-test",
                                       clean_start=False, keepalive_s=5) as client:
                    await client.subscribe([(self.topic, 1)])
                    self.connected.set()
                    while True:
                        for message in await client.next_batch():
                            doc = json.loads(message.payload)
                            doc["_topic"] = message.topic
                            self.messages.append(doc)
            except DeviceError:
                self.connected.clear()
                # Not faster: each attempt takes an ephemeral port, and a storm of them may
                # land on the port of a broker the test is about to restart.
                await asyncio.sleep(0.5)

    async def __aenter__(self) -> DeskSubscriber:
        self._task = asyncio.create_task(self._run(), name="desk-subscriber")
        async with asyncio.timeout(10):
            await self.connected.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def changes(self) -> set[tuple[str, str]]:
        return {(m["alert"]["id"], m["change"]) for m in self.messages if "alert" in m}

    def alert_keys(self, change: str = "raised") -> list[str]:
        return [m["alert"]["key"] for m in self.messages if m.get("change") == change]

    async def wait_for(self, predicate: Any, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await asyncio.sleep(0.05)


def plant_room_site(folder: Path, devices: str, extra: str = "") -> Path:
    """A site file of one plant room with the given Modbus `devices:` lines (YAML, already
    indented as list items), the shipped profiles beside it, and `extra` top-level YAML."""
    shutil.copytree(ROOT / "config" / "profiles", folder / "profiles", dirs_exist_ok=True)
    text = f"""\
site: {{id: furong-test, name: Furong test}}
gateway:
  data_dir: {folder / 'data'}
  http: {{host: 127.0.0.1, port: 0}}
buildings:
  - id: main
    name: main compound
    zones:
      - {{id: main-plant-room, name: plant room}}
devices:
{devices.rstrip()}
{extra}"""
    path = folder / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path
