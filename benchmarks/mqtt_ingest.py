"""The MQTT read path alone, through a real mosquitto: what a subscriber costs per 1,000
messages when it only decodes each JSON payload.

The same load (benchmarks/load.py: pre-encoded QoS 0 heat-detector reports, in its own
process) is read in turn by:
- `paho`: paho-mqtt 2.2 on the event loop, with paho's own reads (three `recv()` calls
  a packet). This is the issue's reference subscriber ("paho-mqtt 2.x driven directly
  from the event loop": 0.018 CPU-s per 1,000 when the target was set);
- `paho-buffered`: the same, with the gateway's `BufferedClient` (one `recv()` serves
  many packets) and its `LazyMessageInfo` (no `threading.Condition` per message read):
  what the daemon runs.

Each figure is this process's CPU (utime + stime) over the run and its drain, divided by
the messages read. The machine is shared and its speed varies from day to day, so compare
the variants of one run with each other, and the gateway's own figure
(benchmarks/heat_detector_throughput.py) with the reference of a run made beside it.

    .venv/bin/python benchmarks/mqtt_ingest.py --rate 10000 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402

from gateway import mqtt_loop  # noqa: E402
from gateway.mqtt_loop import LinkOptions, MqttLink  # noqa: E402
from tests.brokers import Mosquitto  # noqa: E402

DEVICES = [f"hd-{n:02d}" for n in range(1, 41)]


async def read_once(host: str, port: int, rate: float, seconds: float, buffered: bool,
                    ) -> tuple[int, int, float]:
    """(sent, read, CPU-s of this process) for one subscriber variant."""
    paho.MQTTMessageInfo = (  # type: ignore[misc]
        mqtt_loop.LazyMessageInfo if buffered else mqtt_loop.PAHO_MESSAGE_INFO)
    link = MqttLink(LinkOptions(host, port, f"bench-ingest-{int(buffered)}", protocol=4,
                                buffered_reads=buffered))
    await link.connect()
    await link.subscribe([("furong/fire/heat/#", 0)])
    blaster = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import asyncio, json\n"
        "from benchmarks.load import blast\n"
        f"r = asyncio.run(blast({host!r}, {port}, {rate}, {seconds}, {DEVICES!r}, "
        f"client_id='bench-ingest-load-{int(buffered)}'))\n"
        "print(json.dumps(r.total))\n",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    read = 0
    cpu0 = time.process_time()
    done = asyncio.ensure_future(blaster.communicate())
    quiet_since: float | None = None
    while True:
        try:
            batch = await asyncio.wait_for(link.next_batch(), 0.5)
        except TimeoutError:
            batch = []
        for message in batch:
            json.loads(message.payload)
        read += len(batch)
        if done.done():
            if batch:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 1.0:
                break
    cpu = time.process_time() - cpu0
    out, _ = done.result()
    await link.disconnect(timeout_s=2.0)
    return int(json.loads(out)), read, cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=10_000, help="messages/s")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2, help="each variant, alternating")
    args = parser.parse_args()
    results: dict[str, list[float]] = {"paho": [], "paho-buffered": []}
    with Mosquitto() as broker:
        for _ in range(args.rounds):
            for name, buffered in (("paho", False), ("paho-buffered", True)):
                sent, read, cpu = await read_once(broker.host, broker.port, args.rate,
                                                  args.seconds, buffered)
                per_1000 = cpu / max(read, 1) * 1000
                results[name].append(per_1000)
                print(f"{name:14s} sent {sent:,} read {read:,}  CPU {cpu:.2f} s = "
                      f"{per_1000:.4f} s per 1,000")
    paho, ours = min(results["paho"]), min(results["paho-buffered"])
    print(f"best of {args.rounds}: paho {paho:.4f}, paho-buffered {ours:.4f} s per 1,000 "
          f"(buffered/paho = {ours / paho:.2f})")


if __name__ == "__main__":
    asyncio.run(main())
