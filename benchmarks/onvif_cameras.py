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

from benchmarks.camera_farm import Farm, own_cpu_s


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
        held = sum(int(str(s["subscriptions"])) for s in farm.status().values())
        answered[0] = 0
        sim0, own0, t0 = farm.cpu_s(), own_cpu_s(), time.perf_counter()
        flips = 0
        while time.perf_counter() - t0 < args.seconds:
            await asyncio.sleep(args.motion or args.seconds)
            if args.motion:
                flips += 1
                await asyncio.to_thread(farm.control, f"* motion {'on' if flips % 2 else 'off'}")
        elapsed = time.perf_counter() - t0
        sim_pct = 100 * (farm.cpu_s() - sim0) / elapsed
        own_pct = 100 * (own_cpu_s() - own0) / elapsed
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        for client, manager in pairs:
            await manager.shutdown()
            await client.close()
        left = sum(int(str(s["subscriptions"])) for s in farm.status().values())
    print(f"subscriptions held during the window: {held}")
    print(f"simulator CPU: {sim_pct:.2f} % of one core over {elapsed:.0f} s "
          f"({answered[0]} polls answered, {flips} motion switches)")
    print(f"clients' CPU (onvif-zeep-async, this process): {own_pct:.1f} % of one core")
    print(f"subscriptions left after every client unsubscribed: {left}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--poll", type=float, default=10.0, help="PullMessages Timeout, s")
    p.add_argument("--motion", type=float, default=0.0,
                   help="switch motion on every camera every N s (0: idle)")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
