"""The gateway's ONVIF cost: N cameras' ONVIF monitors (drivers.onvif), each under its
supervisor, against simulated cameras in their own process, so only the gateway's side is
measured.

    .venv/bin/python benchmarks/onvif_monitors.py [--cameras 50] [--seconds 30]
        [--poll 30] [--motion 0]

Per camera: GetServices, device information, the clock, the profiles and their URIs, one
PullPoint subscription, then one long poll always waiting on it (PullMessages, Timeout
`--poll`), renewed at half its 10 min life and the clock read every 5 min (the driver's
defaults). Prints the start-up CPU, then this process's CPU (% of one core) over
`--seconds` of steady state, extrapolated to 100 cameras, and its memory. `--motion N`
switches motion on and off on every camera every N s, so the polls carry events."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.camera_farm import CountingSink, Farm, motion_window, onvif_args, own_cpu_s, rss_mib
from drivers.onvif.driver import OnvifMonitor, Timing
from drivers.rtsp.config import CameraDevice
from gateway.supervisor import LinkState, Supervisor


class Rejections(CountingSink):
    def __init__(self) -> None:
        super().__init__()
        self.reasons: Counter[str] = Counter()

    def rejected(self, driver: str, reason: str, detail: str, source: str | None = None) -> None:
        self.reasons[reason] += 1


async def run(args: argparse.Namespace) -> None:
    logging.getLogger().setLevel(logging.WARNING)  # onvif's import set INFO
    farm = Farm(args.cameras, "h264", 320, 180, 128_000, fps=10)
    login = "bench"
    farm.args += ["--username", "viewer", "--password", login]  # every call is signed
    with farm:
        sink = Rejections()
        timing = Timing(poll_s=args.poll)
        opening = asyncio.Semaphore(8)  # as the gateway starts them
        sups = []
        for cam, url in farm.urls.items():
            device = CameraDevice(driver="rtsp", id=cam, kind="camera", zone="bench",
                                  address=url, onvif=f"{farm.onvif[cam]}/onvif/device_service",
                                  username="viewer", password={"env": "UNUSED"})
            monitor = OnvifMonitor(device, sink, password=login, timing=timing,
                                   opening=opening)
            sups.append(Supervisor(monitor, sink=sink, family="camera.onvif"))
        rss0, cpu0, t0 = rss_mib(), own_cpu_s(), time.perf_counter()
        tasks = [asyncio.ensure_future(s.run()) for s in sups]
        while not all(s.state is LinkState.UP for s in sups):
            await asyncio.sleep(0.05)
        started_s, start_cpu = time.perf_counter() - t0, own_cpu_s() - cpu0
        print(f"{args.cameras} cameras up in {started_s:.1f} s, "
              f"{start_cpu:.2f} CPU-s ({1000 * start_cpu / args.cameras:.0f} ms each)")
        await asyncio.sleep(2)  # the Initialized messages pulled, every poll waiting
        events0, cpu1, t1 = len(sink.events), own_cpu_s(), time.perf_counter()
        elapsed, flips = await motion_window(farm, t1, args.seconds, args.motion)
        pct = 100 * (own_cpu_s() - cpu1) / elapsed
        events = len(sink.events) - events0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        held = farm.subscriptions()
    print(f"steady: {pct:.2f} % of one core over {elapsed:.0f} s for {args.cameras} cameras "
          f"({events} events, {flips} motion switches); "
          f"{pct * 100 / args.cameras:.2f} % extrapolated to 100")
    print(f"memory: +{rss_mib() - rss0:.0f} MiB for {args.cameras} sessions; "
          f"rejected {dict(sink.reasons)}; subscriptions left after stop: {held}")


def main() -> None:
    asyncio.run(run(onvif_args(__doc__, cameras=50, seconds=30.0, poll=30.0)))


if __name__ == "__main__":
    main()
