"""A local MQTT broker for the demo: mosquitto when the binary exists, else the embedded
amqtt broker (pure Python, MQTT 3.1.1; the `broker` extra). On site the broker is the
compound's own mosquitto, configured in the site file."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("gateway.broker")


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").exists():
        found = "/usr/sbin/mosquitto"
    return found


class LocalBroker:
    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, *, mosquitto: bool = True
    ) -> None:
        self.host = host
        self.port = port if port is not None else (
            1883 if port_is_free(host, 1883) else free_port(host)
        )
        self.kind = ""
        self._use_mosquitto = mosquitto  # False: the embedded broker even where mosquitto is
        self._proc: asyncio.subprocess.Process | None = None
        self._amqtt: Any = None
        self._dir: Path | None = None

    async def start(self) -> None:
        binary = find_mosquitto() if self._use_mosquitto else None
        if binary is not None:
            self._dir = Path(tempfile.mkdtemp(prefix="gw-broker-"))
            conf = self._dir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {self.host}\nallow_anonymous true\n"
                "persistence false\nlog_dest none\n"
            )
            self._proc = await asyncio.create_subprocess_exec(binary, "-c", str(conf))
            self.kind = "mosquitto"
        else:
            from amqtt.broker import Broker

            self._amqtt = Broker({
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                },
            })
            await self._amqtt.start()
            self.kind = "amqtt (embedded)"
        await self._wait_listening()
        log.info("broker=%s listening=%s:%d", self.kind, self.host, self.port)

    async def _wait_listening(self) -> None:
        async with asyncio.timeout(10.0):
            while True:
                try:
                    _, writer = await asyncio.open_connection(self.host, self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                await writer.wait_closed()
                return

    async def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                async with asyncio.timeout(5.0):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
            self._proc = None
        if self._amqtt is not None:
            await self._amqtt.shutdown()
            self._amqtt = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
