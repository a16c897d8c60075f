"""A real mosquitto process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed: run `sh scripts/install-system-deps`")
    return found


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


class Mosquitto:
    """One broker process; `stop()` and `start()` simulate an outage on the same port."""

    def __init__(self, port: int | None = None, *, persistent: bool = False,
                 listener: str = "", acl: str | None = None) -> None:
        """`listener`: options of the listener (TLS files); `acl`: an ACL file's text.

        Started as root, mosquitto drops to its own user before it reads the ACL and TLS
        files: they live in the broker's folder, readable by all (test data only)."""
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="mosq-"))
        self._dir.chmod(0o755)
        extra = ""
        if acl is not None:
            (self._dir / "acl").write_text(acl)
            (self._dir / "acl").chmod(0o644)
            extra = f"acl_file {self._dir / 'acl'}\n"
        self._proc: subprocess.Popen[bytes] | None = None
        conf = self._dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            + listener
            + "allow_anonymous true\n"
            # As on site: an alarm is one small packet and must not wait for Nagle.
            "set_tcp_nodelay true\n"
            + (
                # Sessions and queued QoS 1 messages survive a restart, as on site.
                f"persistence true\npersistence_location {self._dir}/\nautosave_interval 1\n"
                if persistent
                else "persistence false\n"
            )
            +
            "max_queued_messages 1000000\n"
            "max_inflight_messages 0\n"
            "log_dest stderr\n"
            "log_type error\n"
            + extra
        )
        self.conf = conf

    @property
    def folder(self) -> Path:
        return self._dir

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self._dir / "stderr.log").open("ab"),
        )
        wait_port(self.host, self.port)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
