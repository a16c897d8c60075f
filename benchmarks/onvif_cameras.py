"""The camera simulator's ONVIF side under a gateway's steady load: 100 cameras, each with
one PullPoint subscription held by onvif-zeep-async and one long poll always waiting on it
(as an event client keeps it), and nothing else asked of them (their RTSP is idle).

    .venv/bin/python benchmarks/onvif_cameras.py [--cameras 100] [--seconds 20]
        [--poll 10] [--motion 0]

Prints the simulator process's CPU (% of one core) over `--seconds`, the polls answered,
and, after every client has unsubscribed, the subscriptions the cameras still hold (0
unless a client leaked one). `--motion N` switches motion on and off on every camera every
N seconds during the window, so the polls carry events."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from onvif import ONVIFCamera

from benchmarks.camera_farm import Farm, motion_window, onvif_args, own_cpu_s


async def subscribe(base: str) -> tuple[ONVIFCamera, Any]:
    url = urlsplit(base)
    client = ONVIFCamera(url.hostname or "127.0.0.1", url.port or 80, "admin", "bench",
                         no_cache=True)
    await client.update_xaddrs()
    manager = await client.create_pullpoint_manager(dt.timedelta(seconds=120), lambda: None)
    return client, manager


async def poll(manager: Any, seconds: float, answered: list[int]) -> None:
    service = manager.get_service()
    while True:
        await service.PullMessages({"MessageLimit": 100,
                                    "Timeout": dt.timedelta(seconds=seconds)})
        answered[0] += 1


async def run(args: argparse.Namespace) -> None:
    logging.getLogger("onvif").setLevel(logging.WARNING)
    farm = Farm(args.cameras, "h264", 320, 180, 128_000, fps=10)
    farm.args += ["--username", "admin", "--password", "bench"]  # every call is signed
    with farm:
        started = time.perf_counter()
        pairs = []
        for n in range(0, args.cameras, 20):  # subscribed in batches, as a gateway starts
            pairs += await asyncio.gather(*(subscribe(base) for base in
                                            list(farm.onvif.values())[n : n + 20]))
        print(f"{args.cameras} cameras subscribed in {time.perf_counter() - started:.1f} s")
        answered = [0]
        polls = [asyncio.ensure_future(poll(m, args.poll, answered)) for _, m in pairs]
        await asyncio.sleep(2)  # the initial messages pulled, every poll waiting
        held = farm.subscriptions()
        answered[0] = 0
        sim0, own0, t0 = farm.cpu_s(), own_cpu_s(), time.perf_counter()
        elapsed, flips = await motion_window(farm, t0, args.seconds, args.motion)
        sim_pct = 100 * (farm.cpu_s() - sim0) / elapsed
        own_pct = 100 * (own_cpu_s() - own0) / elapsed
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        for client, manager in pairs:
            await manager.shutdown()
            await client.close()
        left = farm.subscriptions()
    print(f"subscriptions held during the window: {held}")
    print(f"simulator CPU: {sim_pct:.2f} % of one core over {elapsed:.0f} s "
          f"({answered[0]} polls answered, {flips} motion switches)")
    print(f"clients' CPU (onvif-zeep-async, this process): {own_pct:.1f} % of one core")
    print(f"subscriptions left after every client unsubscribed: {left}")


def main() -> None:
    asyncio.run(run(onvif_args(__doc__, cameras=100, seconds=20.0, poll=10.0)))


if __name__ == "__main__":
    main()
