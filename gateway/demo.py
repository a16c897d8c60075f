"""`compound-gateway demo`: a broker, the simulated compound and the gateway together on
localhost, with a short scripted scenario so the desk page has something to show."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from gateway.app import Gateway, Overrides
from gateway.broker import LocalBroker, free_port, port_is_free
from gateway.config import load_site
from simulators.compound_cameras import DEMO_CAMERAS, CompoundCameras
from simulators.compound_lifts import CompoundLifts
from simulators.compound_meters import start_meters
from simulators.gates import GateDemo
from simulators.heat_detectors import HeatDetectorFleet

log = logging.getLogger("gateway.demo")

# (seconds after start, action, device, detail): a fast-rising fire in office building A,
# a dirty detector in the health building, a weak battery, and a detector that goes silent.
SCENARIO: list[tuple[float, str, str, str]] = [
    (5, "fire", "hd-main-07", "fast"),
    (8, "fault", "hd-health-03", "dirty"),
    (12, "low_battery", "hd-main-20", ""),
    (15, "silence", "hd-main-30", ""),
    (240, "extinguish", "hd-main-07", ""),
    (260, "clear_fault", "hd-health-03", ""),
    (280, "resume", "hd-main-30", ""),
]
DEMO_INTERVAL_S = 10.0  # detectors report every 10 s in the demo (30 s on site)


async def _scenario(fleet: HeatDetectorFleet) -> None:
    started = asyncio.get_running_loop().time()
    for at, action, device, detail in SCENARIO:
        await asyncio.sleep(max(0.0, started + at - asyncio.get_running_loop().time()))
        log.info("demo scenario: %s %s %s", action, device, detail)
        if action == "fire":
            fleet.fire(device, detail)
        elif action == "fault":
            fleet.fault(device, detail)
        else:
            getattr(fleet, action)(device)


async def run_demo(site_path: Path, data_dir: Path, http_port: int,
                   cameras: int = DEMO_CAMERAS) -> int:
    site = load_site(site_path)
    lifts = await CompoundLifts.start(site)  # the lift boxes and the fire panel gateway
    site = lifts.site
    gates = await GateDemo.start(site, data_dir, site_path.parent / "vehicles.csv")
    site = gates.site
    cams = await CompoundCameras.start(site, cameras)  # the first N cameras, on loopback
    site = cams.site
    broker = LocalBroker()
    await broker.start()
    if not port_is_free("127.0.0.1", http_port):
        http_port = free_port()
    meters = await start_meters(site_path)  # the site file's meters, on loopback
    gateway = Gateway(
        site, site_path,
        overrides=Overrides(broker=(broker.host, broker.port), data_dir=data_dir,
                            http_port=http_port, http_host="127.0.0.1",
                            push_port=free_port(), modbus=meters.addresses),
    )
    fleet = HeatDetectorFleet(broker.host, broker.port, site_file=site_path,
                              interval_s=DEMO_INTERVAL_S)
    try:
        async with asyncio.TaskGroup() as tg:
            gw_task = tg.create_task(gateway.run(), name="gateway")
            await gateway.ready.wait()
            sim_task = tg.create_task(fleet.run(), name="simulator")
            gate_task = tg.create_task(gates.run(
                lambda: gateway.gates.push_port if gateway.gates else None), name="gates")
            script = tg.create_task(_scenario(fleet), name="scenario")
            lift_task = tg.create_task(lifts.run(), name="lifts")
            metering = tg.create_task(meters.run(), name="simulated-meters")
            base = f"http://127.0.0.1:{gateway.http_port}"
            print(
                "\nFurong compound gateway demo is running (Ctrl-C to stop)\n"
                f"  security desk:   {base}/\n"
                f"  alert feed:      {base}/api/alerts   (live: {base}/api/alerts/stream)\n"
                f"  metrics:         {base}/metrics      health: {base}/healthz\n"
                f"  energy savings:  {base}/api/savings  (compound-gateway savings)\n"
                f"  broker:          {broker.kind} on {broker.host}:{broker.port}"
                f"  (alerts on {site.gateway.topic_prefix}/alert/#)\n"
                f"  store:           {gateway.db_path}\n"
                f"  cameras:         {len(cams.farm.cameras)} simulated (--cameras N)\n"
                "  inject a fire:   mosquitto_pub -p "
                f"{broker.port} -t furong/sim/control "
                "-m '{\"action\":\"fire\",\"device\":\"hd-main-03\",\"mode\":\"fast\"}'\n",
                flush=True,
            )
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, gateway.request_shutdown)
            await gw_task
            for task in (sim_task, script, lift_task, gate_task, metering):
                task.cancel()
    finally:
        await lifts.stop()
        await cams.stop()
        with contextlib.suppress(Exception):
            await broker.stop()
        await meters.stop()
    return 0
