"""Which RTSP client watches 100 streams cheapest: the same simulated cameras read by
- `asyncio`: the gateway's own client (drivers/rtsp), one process, interleaved RTP parsed
  in place, stream health from the framing;
- `pyav`: one thread per stream, PyAV (FFmpeg) demuxing packets, nothing decoded;
- `aiortsp`: the aiortsp library (asyncio, RTP over TCP via `rtspt://`), counting packets.

    .venv/bin/python benchmarks/rtsp_clients.py [--cameras 20] [--seconds 10]

Each client reads `--cameras` streams (720p H.264, 2 Mbit/s, 25 fps) for `--seconds`
after a warm-up; its process CPU is extrapolated to 100 cameras. The simulator runs in
its own process and its CPU is printed apart."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.camera_farm import CountingSink, Farm, own_cpu_s
from drivers.rtsp.config import CameraDevice
from drivers.rtsp.driver import CameraDriver
from gateway.supervisor import Supervisor


async def measure(farm: Farm, warm_s: float, seconds: float,
                  start: Callable[[], Callable[[], int]]) -> tuple[float, float, int]:
    """(client CPU s, simulator CPU s, packets or frames seen) over `seconds`."""
    stop = start()
    await asyncio.sleep(warm_s)
    c0, s0, n0 = own_cpu_s(), farm.cpu_s(), stop()
    await asyncio.sleep(seconds)
    return own_cpu_s() - c0, farm.cpu_s() - s0, stop() - n0


def asyncio_client(urls: list[str], tasks: list[asyncio.Task[None]]
                   ) -> Callable[[], Callable[[], int]]:
    def start() -> Callable[[], int]:
        drivers = []
        for n, url in enumerate(urls):
            dev = CameraDevice(driver="rtsp", id=f"cam-{n:03d}", kind="camera", zone="z",
                               address=url)
            d = CameraDriver(dev, CountingSink())  # type: ignore[arg-type]
            drivers.append(d)
            tasks.append(asyncio.get_running_loop().create_task(Supervisor(d).run()))
        return lambda: sum(d.health.packets for d in drivers if d.health is not None)
    return start


def pyav_client(urls: list[str], stopping: threading.Event) -> Callable[[], Callable[[], int]]:
    import av

    counts = [0] * len(urls)

    def read(n: int, url: str) -> None:
        container = av.open(url, options={"rtsp_transport": "tcp"}, timeout=10)
        try:
            for packet in container.demux(container.streams.video[0]):
                counts[n] += 1  # FFmpeg's packet: one frame, reassembled
                _ = (packet.size, packet.is_keyframe, packet.pts)
                if stopping.is_set():
                    break
        finally:
            container.close()

    def start() -> Callable[[], int]:
        for n, url in enumerate(urls):
            threading.Thread(target=read, args=(n, url), daemon=True).start()
        return lambda: sum(counts)
    return start


def aiortsp_client(urls: list[str], tasks: list[asyncio.Task[None]]
                   ) -> Callable[[], Callable[[], int]]:
    from aiortsp.rtsp.reader import RTSPReader

    counts = [0] * len(urls)

    async def read(n: int, url: str) -> None:
        async with RTSPReader(url.replace("rtsp://", "rtspt://"), log_level=30) as reader:
            async for pkt in reader.iter_packets():
                counts[n] += 1
                _ = (pkt.seq, pkt.ts, len(pkt.data))

    def start() -> Callable[[], int]:
        for n, url in enumerate(urls):
            tasks.append(asyncio.get_running_loop().create_task(read(n, url)))
        return lambda: sum(counts)
    return start


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cameras", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warm", type=float, default=3.0)
    p.add_argument("--clients", default="asyncio,pyav,aiortsp")
    args = p.parse_args()
    scale = 100 / args.cameras
    print(f"{args.cameras} cameras, 1280x720 H.264 2 Mbit/s 25 fps, {args.seconds:g} s; "
          f"CPU as % of one core, extrapolated x{scale:g} to 100 cameras")
    for name in args.clients.split(","):
        with Farm(args.cameras, "h264", 1280, 720, 2_000_000) as farm:
            urls = list(farm.urls.values())
            tasks: list[asyncio.Task[None]] = []
            stopping = threading.Event()
            if name == "asyncio":
                start = asyncio_client(urls, tasks)
            elif name == "pyav":
                start = pyav_client(urls, stopping)
            else:
                try:
                    start = aiortsp_client(urls, tasks)
                except ImportError:
                    print(f"{name:8} not installed (pip install aiortsp==1.4.0)")
                    continue
            t0 = time.perf_counter()
            cpu, sim, seen = await measure(farm, args.warm, args.seconds, start)
            wall = time.perf_counter() - t0 - args.warm
            stopping.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            unit = "frames" if name == "pyav" else "RTP packets"
            print(f"{name:8} client {100 * cpu / wall * scale:6.1f}% of a core for 100 "
                  f"({100 * cpu / wall:5.1f}% measured); {seen / wall:8.0f} {unit}/s; "
                  f"simulator {100 * sim / wall:5.1f}%")
            await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
