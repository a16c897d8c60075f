"""The whole daemon with the compound's Modbus devices: the shipped site file's 28 meters
and its relay module, served by the compound simulator in another process, polled by
the gateway (drivers, pipeline, rules with the leak rule, metering, downsampling, the
store on disk, Prometheus).

    .venv/bin/python benchmarks/modbus_daemon.py [--seconds 20]

Scenarios: the site file's intervals (meters every 5 s, water and gas every 10 s), and
every device at 1 Hz. Prints polls/s, readings/s, store commits/s, CPU % of one core and
CPU-s per 1,000 polls of the daemon's process, a scrape's duration, and RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.app import Gateway, Overrides  # noqa: E402
from gateway.config import Site, load_site  # noqa: E402

SITE = ROOT / "config" / "site.yaml"


@contextlib.contextmanager
def compound_simulator() -> Any:
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.compound_meters", "--site", str(SITE)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        served = json.loads(process.stdout.readline())
        yield {link: (address.rpartition(":")[0], int(address.rpartition(":")[2]))
               for link, address in served.items()}
    finally:
        process.terminate()
        process.wait(10)


SIMULATED = ("energy_meter", "water_meter", "gas_meter", "io_module")


def modbus_only(site: Site, poll_s: float | None) -> Site:
    """The meters and the relay module alone (the lifts have a benchmark of their own)."""
    devices = [d if poll_s is None else d.model_copy(update={"poll_s": poll_s})
               for d in site.devices_of("modbus") if d.kind in SIMULATED]
    return site.model_copy(update={"devices": devices, "forwarding": []})


def _scrape(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  # loopback, ours
        response.read()
    return time.perf_counter() - started


async def measure(name: str, site: Site, addresses: dict[str, tuple[str, int]],
                  seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data:
        gateway = Gateway(site, SITE, overrides=Overrides(
            data_dir=Path(data), http_port=0, http_host="127.0.0.1", modbus=addresses))
        task = asyncio.create_task(gateway.run())
        await gateway.ready.wait()
        await asyncio.sleep(12.0)  # connect, stagger, first polls of the 10 s units

        def polls() -> int:
            return sum(s.driver.scheduler.polls for s in gateway.supervisors  # type: ignore[attr-defined]
                       if getattr(s.driver, "scheduler", None) is not None)

        pipeline = gateway.pipeline
        assert pipeline is not None
        p0, items0, commits0 = polls(), pipeline.items, gateway.store.commits
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        p1, items1, commits1 = polls(), pipeline.items, gateway.store.commits
        scrape = await asyncio.to_thread(
            _scrape, f"http://127.0.0.1:{gateway.http_port}/metrics")
        links = {s.name: s.state.value for s in gateway.supervisors}
        gateway.request_shutdown()
        await task
    n = p1 - p0
    return {
        "scenario": name,
        "devices": len(site.devices),
        "links_up": sum(1 for v in links.values() if v == "up"),
        "polls_per_s": round(n / wall, 1),
        "items_per_s": round((items1 - items0) / wall, 1),
        "store_commits_per_s": round((commits1 - commits0) / wall, 2),
        "cpu_pct_of_one_core": round(100 * cpu / wall, 2),
        "cpu_s_per_1000_polls": round(1000 * cpu / max(1, n), 3),
        "scrape_ms": round(1000 * scrape, 1),
        "rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def main(seconds: float) -> list[dict[str, Any]]:
    site = load_site(SITE)
    rows = []
    with compound_simulator() as addresses:
        rows.append(await measure("compound daemon, site intervals", modbus_only(site, None),
                                  addresses, seconds))
        rows.append(await measure("compound daemon, 1 Hz", modbus_only(site, 1.0), addresses,
                                  seconds))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    for row in asyncio.run(main(parser.parse_args().seconds)):
        print(json.dumps(row, ensure_ascii=False))
