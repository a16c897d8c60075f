"""Shared by the camera benchmarks: simulated cameras in their own process (so their CPU
is not the gateway's), faults switched by control lines, and a sink that only counts; for
the ONVIF ones, their command line and their steady window with motion switched."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.events import Event, Heartbeat, Reading  # noqa: E402


class Farm:
    """`python -m simulators.cameras` as a child process; `urls` by camera id."""

    def __init__(self, count: int, codec: str, width: int, height: int, bitrate: int,
                 fps: int = 25, pictures: str = "") -> None:
        self.args = [sys.executable, "-m", "simulators.cameras", "--count", str(count),
                     "--codec", codec, "--width", str(width), "--height", str(height),
                     "--bitrate", str(bitrate), "--fps", str(fps), "--pictures", pictures]
        self.urls: dict[str, str] = {}
        self.onvif: dict[str, str] = {}  # camera id -> ONVIF base URL
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Farm:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            item = json.loads(line)
            if "ready" in item:
                break
            self.urls[item["id"]] = item["url"]
            self.onvif[item["id"]] = item.get("onvif", "")
        self.ps = psutil.Process(self.proc.pid)
        return self

    def control(self, line: str) -> str:
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return str(json.loads(self.proc.stdout.readline())["answer"])

    def status(self, target: str = "*") -> dict[str, dict[str, object]]:
        """`<target> status`: per camera, its RTSP sessions and ONVIF subscriptions."""
        assert self.proc is not None
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{target} status\n")
        self.proc.stdin.flush()
        found: dict[str, dict[str, object]] = json.loads(self.proc.stdout.readline())["status"]
        return found

    def subscriptions(self) -> int:
        """The ONVIF subscriptions all the cameras hold now."""
        return sum(int(str(s["subscriptions"])) for s in self.status().values())

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


class CountingSink:
    def __init__(self) -> None:
        self.readings = 0
        self.events: list[tuple[float, Event]] = []
        self.rejected_n = 0
        self._seq: dict[str, int] = {}

    def telemetry(self, item: Reading | Heartbeat) -> None:
        self.readings += 1

    async def event(self, event: Event) -> None:
        self.events.append((asyncio.get_running_loop().time(), event))

    def settle(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def decide(self, event: Event, timeout_s: float = 5.0) -> object:
        raise NotImplementedError

    def next_seq(self, source: str) -> int:
        self._seq[source] = self._seq.get(source, 0) + 1
        return self._seq[source]

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        self.rejected_n += 1

    def sequence(self, driver: str, source: str, *, lost: int = 0, duplicate: bool = False,
                 restarted: bool = False) -> None:
        return None


def own_cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def rss_mib() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


async def motion_window(farm: Farm, since: float, seconds: float,
                        motion: float) -> tuple[float, int]:
    """Waits until `seconds` have passed since `since` (a `time.perf_counter()` read with
    the caller's CPU samples, so the window is the one they cover), switching motion on
    and off on every camera every `motion` s (0: never), so the polls carry events.
    Returns the window's length in seconds and the switches made."""
    flips = 0
    while time.perf_counter() - since < seconds:
        await asyncio.sleep(motion or seconds)
        if motion:
            flips += 1
            await asyncio.to_thread(farm.control, f"* motion {'on' if flips % 2 else 'off'}")
    return time.perf_counter() - since, flips


def onvif_args(doc: str | None, cameras: int, seconds: float,
               poll: float) -> argparse.Namespace:
    """The ONVIF benchmarks' command line: the same options, each benchmark's defaults."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=cameras)
    p.add_argument("--seconds", type=float, default=seconds)
    p.add_argument("--poll", type=float, default=poll, help="PullMessages Timeout, s")
    p.add_argument("--motion", type=float, default=0.0,
                   help="switch motion on every camera every N s (0: idle)")
    return p.parse_args()
