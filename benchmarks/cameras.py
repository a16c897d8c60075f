"""100 cameras watched from their RTP framing, against a naive monitor that decodes every
frame, on the same simulated cameras in the same run.

    .venv/bin/python benchmarks/cameras.py [--cameras 100] [--seconds 15] [--naive 10]

For each scenario (1080p H.264 at 4 Mbit/s, 720p H.265 at 1.5 Mbit/s, both 25 fps):
1. the gateway's stream monitors (drivers/rtsp, one supervisor per camera, as the daemon
   runs them: stream health from the RTP, one keyframe per camera decoded every 15 s for
   picture health) watch every camera: CPU (% of one core) and RSS of their process;
2. stream loss: one camera at a time stalls (RTP stops, the connection stays open) and
   then is cut off; the time until its supervisor reports it down; then picture faults:
   two cameras turn black and two freeze, and the time until each is told;
3. the naive monitor: `cv2.VideoCapture` in a thread per camera, reading (decoding) every
   frame of `--naive` cameras, CPU extrapolated to all of them, and the ratio printed.
The simulated cameras run in their own process; their CPU is printed apart.

    .venv/bin/python benchmarks/cameras.py --cpu-only --scenarios h264-1080p --seconds 12

measures only the monitors' CPU, twice on the same simulated cameras: with picture health
(one keyframe per camera every 15 s), then with stream health alone; the difference is
picture health's share. It fits in a minute."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.camera_farm import CountingSink, Farm, own_cpu_s, rss_mib
from drivers.rtsp.config import CameraDevice
from drivers.rtsp.driver import CameraDriver
from gateway.supervisor import LinkState, Supervisor

SCENARIOS = {
    "h264-1080p": ("h264", 1920, 1080, 4_000_000),
    "h265-720p": ("h265", 1280, 720, 1_500_000),
}


async def until(check: object, deadline_s: float = 30.0) -> None:
    async with asyncio.timeout(deadline_s):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def watch(farm: Farm, seconds: float, probes: int) -> dict[str, float]:
    sink = CountingSink()
    sups: dict[str, Supervisor] = {}
    tasks = []
    for cam_id, url in farm.urls.items():
        dev = CameraDevice(driver="rtsp", id=cam_id, kind="camera", zone="z", address=url)
        sup = Supervisor(CameraDriver(dev, sink), sink=sink,  # type: ignore[arg-type]
                         family="camera.stream")
        sups[cam_id] = sup
        tasks.append(asyncio.get_running_loop().create_task(sup.run(), name=cam_id))
    await until(lambda: all(s.state is LinkState.UP for s in sups.values()))
    def packets() -> int:
        return sum(s.driver.health.packets for s in sups.values()  # type: ignore[attr-defined]
                   if s.driver.health is not None)  # type: ignore[attr-defined]

    await asyncio.sleep(3.0)  # past the first windows
    c0, s0, p0, t0 = own_cpu_s(), farm.cpu_s(), packets(), time.perf_counter()
    await asyncio.sleep(seconds)
    wall = time.perf_counter() - t0
    out = {"cpu": 100 * (own_cpu_s() - c0) / wall, "sim": 100 * (farm.cpu_s() - s0) / wall,
           "rss": rss_mib(), "packets": (packets() - p0) / wall}
    stalls, cuts = [], []
    for n, cam_id in enumerate(list(farm.urls)[:probes]):
        sup = sups[cam_id]
        fault = "stall" if n % 2 == 0 else "refuse"
        started = time.perf_counter()
        farm.control(f"{cam_id} {fault} on")
        await until(lambda sup=sup: sup.state is LinkState.DOWN)
        (stalls if fault == "stall" else cuts).append(time.perf_counter() - started)
        farm.control(f"{cam_id} {fault} off")
        await until(lambda sup=sup: sup.state is LinkState.UP)
    out["stall_p50"], out["stall_max"] = statistics.median(stalls), max(stalls)
    out["cut_p50"], out["cut_max"] = statistics.median(cuts), max(cuts)
    # Picture faults: two cameras turn black and two freeze, at once; the time until
    # each one's `camera.image.*` event (sampling every 15 s, three bad in a row).
    loop = asyncio.get_running_loop()
    probes_at: dict[str, tuple[str, float]] = {}
    ids = list(farm.urls)[probes : probes + 4]
    for cam_id, picture in zip(ids, ("black", "frozen", "black", "frozen"), strict=True):
        farm.control(f"{cam_id} picture {picture}")  # answered once the clip is encoded
        probes_at[cam_id] = (picture, loop.time())

    def told(cam_id: str) -> float | None:
        picture, since = probes_at[cam_id]
        for at, event in sink.events:
            if event.source == cam_id and event.kind == f"camera.image.{picture}":
                return at - since
        return None

    await until(lambda: all(told(c) is not None for c in ids), deadline_s=180)
    for picture in ("black", "frozen"):
        times = [told(c) or 0.0 for c in ids if probes_at[c][0] == picture]
        out[f"{picture}_max"] = max(times)
        out[f"{picture}_min"] = min(times)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return out


async def monitors_cpu(farm: Farm, seconds: float, picture_every_s: float | None) -> float:
    """The monitors' CPU (% of one core) over `seconds`, once every camera is up.
    `picture_every_s` None: stream health alone (no keyframe comes due in the run)."""
    sink = CountingSink()
    sups = []
    for cam_id, url in farm.urls.items():
        dev = CameraDevice(driver="rtsp", id=cam_id, kind="camera", zone="z", address=url)
        # Past the site file's bounds on purpose: no picture is sampled in this run.
        dev = dev.model_copy(update={"picture_every_s": picture_every_s or 1e9})
        sups.append(Supervisor(CameraDriver(dev, sink), sink=sink,  # type: ignore[arg-type]
                               family="camera.stream"))
    tasks = [asyncio.get_running_loop().create_task(s.run()) for s in sups]
    await until(lambda: all(s.state is LinkState.UP for s in sups))
    await asyncio.sleep(3.0)
    c0, t0 = own_cpu_s(), time.perf_counter()
    await asyncio.sleep(seconds)
    cpu = 100 * (own_cpu_s() - c0) / (time.perf_counter() - t0)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return cpu


def naive(urls: list[str], seconds: float) -> tuple[float, int]:
    """CPU % of one core and frames decoded per second by cv2.VideoCapture threads."""
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
    import cv2

    stop = threading.Event()
    frames = [0] * len(urls)
    opened = threading.Barrier(len(urls) + 1)

    def read(n: int, url: str) -> None:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        opened.wait()
        try:
            while not stop.is_set():
                ok, _ = cap.read()
                if not ok:
                    break
                frames[n] += 1
        finally:
            cap.release()

    threads = [threading.Thread(target=read, args=(n, u), daemon=True)
               for n, u in enumerate(urls)]
    for t in threads:
        t.start()
    opened.wait()
    time.sleep(2.0)
    c0, f0, t0 = own_cpu_s(), sum(frames), time.perf_counter()
    time.sleep(seconds)
    wall = time.perf_counter() - t0
    cpu = 100 * (own_cpu_s() - c0) / wall
    fps = int((sum(frames) - f0) / wall)
    stop.set()
    for t in threads:
        t.join(10)
    return cpu, fps


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cameras", type=int, default=100)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--naive", type=int, default=10)
    p.add_argument("--probes", type=int, default=6)
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--cpu-only", action="store_true",
                   help="the monitors' CPU with and without picture health, nothing else")
    args = p.parse_args()
    if args.cpu_only:
        for name in args.scenarios.split(","):
            codec, w, h, bitrate = SCENARIOS[name]
            with Farm(args.cameras, codec, w, h, bitrate) as farm:
                on = await monitors_cpu(farm, args.seconds, 15.0)
                off = await monitors_cpu(farm, args.seconds, None)
            print(f"{name}: {args.cameras} cameras, {args.seconds:g} s each: with picture "
                  f"health {on:.1f}% of one core, stream health alone {off:.1f}%; "
                  f"picture health {on - off:+.1f} points ({on / max(off, 0.01):.2f}x)")
        return
    print(f"{args.cameras} cameras at 25 fps; monitors measured over {args.seconds:g} s; "
          f"naive monitor on {args.naive}, extrapolated x{args.cameras / args.naive:g}")
    for name in args.scenarios.split(","):
        codec, w, h, bitrate = SCENARIOS[name]
        with Farm(args.cameras, codec, w, h, bitrate, pictures="black,frozen") as farm:
            got = await watch(farm, args.seconds, args.probes)
            n_cpu, n_fps = await asyncio.to_thread(naive, list(farm.urls.values())[:args.naive],
                                                   args.seconds)
        extrapolated = n_cpu * args.cameras / args.naive
        print(f"{name}: {w}x{h} {bitrate / 1e6:g} Mbit/s")
        print(f"  stream monitors  CPU {got['cpu']:5.1f}% of one core, RSS {got['rss']:.0f} MiB,"
              f" {got['packets']:,.0f} RTP packets/s; "
              f"simulator {got['sim']:.1f}%")
        print(f"  stream loss      stalled: p50 {got['stall_p50']:.2f} s, max "
              f"{got['stall_max']:.2f} s; cut off: p50 {got['cut_p50']:.3f} s, max "
              f"{got['cut_max']:.3f} s")
        print(f"  picture faults   black: {got['black_min']:.0f}-{got['black_max']:.0f} s; "
              f"frozen: {got['frozen_min']:.0f}-{got['frozen_max']:.0f} s (one keyframe "
              "per camera every 15 s, three bad in a row)")
        print(f"  naive (cv2)      CPU {n_cpu:5.1f}% for {args.naive} ({n_fps} frames/s "
              f"decoded), {extrapolated:.0f}% extrapolated to {args.cameras}: "
              f"{extrapolated / max(got['cpu'], 0.01):.0f}x the stream monitors")


if __name__ == "__main__":
    asyncio.run(main())
