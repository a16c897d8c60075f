"""Simulated barrier gates: plate cameras that push reads over real HTTP to the gateway's
listener (Vzenith-style JSON or Hikvision-style multipart `anpr.xml` with pictures, from
their own source address), and barriers with an ISAPI-style HTTP control that obey
commands and can jam, lose power or be held open.

Traffic comes from the registry CSV: registered plates, unknown and barred ones, OCR
confusions, low-confidence province characters, offline replays, duplicates and
malformed pushes; `morning_rush` spreads a given rate of vehicles over the gates.

    python -m simulators.gates --listener 127.0.0.1:8090 --csv config/vehicles.csv
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger("simulators.gates")

# A tiny JPEG-shaped picture (start and end markers around noise): pictures are stored
# and served, never decoded.
_JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
_JPEG_TAIL = b"\xff\xd9"


def picture(size: int = 2048, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    body = bytes(rng.getrandbits(8) for _ in range(max(0, size - len(_JPEG_HEAD) - 2)))
    return _JPEG_HEAD + body + _JPEG_TAIL


# ---- barriers -------------------------------------------------------------------------------


@dataclass
class Barrier:
    """One barrier arm: closed or open; a jammed one accepts commands and does not move,
    a powerless one does not answer."""

    id: str
    state: str = "closed"
    jammed: bool = False
    powerless: bool = False
    held: bool = False  # alwaysOpen (fire linkage) until `normal`
    commands: list[str] = field(default_factory=list)

    def command(self, mode: str) -> None:
        self.commands.append(mode)
        if self.jammed:
            return
        if mode in ("open", "alwaysOpen"):
            self.state = "open"
            self.held = mode == "alwaysOpen"
        elif mode in ("close", "normal"):
            self.held = False
            self.state = "closed"

    def passed(self) -> None:
        """A vehicle went through: an arm not held closes behind it."""
        if not self.held and not self.jammed:
            self.state = "closed"


class BarrierServer:
    """The barriers' HTTP control, one path per gate:
    `PUT /gates/<id>/barrierGate` (`<ctrlMode>`), `GET /gates/<id>/barrierGate/status`."""

    def __init__(self, gate_ids: Sequence[str]) -> None:
        self.barriers = {g: Barrier(g) for g in gate_ids}
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    def url(self, gate_id: str) -> str:
        return f"http://127.0.0.1:{self.port}/gates/{gate_id}/barrierGate"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/gates/{gate}/barrierGate", self._put)
        app.router.add_get("/gates/{gate}/barrierGate/status", self._status)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _barrier(self, request: web.Request) -> Barrier:
        barrier = self.barriers.get(request.match_info["gate"])
        if barrier is None:
            raise web.HTTPNotFound()
        if barrier.powerless:
            raise web.HTTPServiceUnavailable()
        return barrier

    async def _put(self, request: web.Request) -> web.Response:
        barrier = self._barrier(request)
        body = (await request.read()).decode(errors="replace")
        start, end = body.find("<ctrlMode>"), body.find("</ctrlMode>")
        if start < 0 or end < start:
            return web.Response(status=400, text="no ctrlMode")
        barrier.command(body[start + len("<ctrlMode>"):end].strip())
        return web.Response(text="<ResponseStatus><statusCode>1</statusCode></ResponseStatus>",
                            content_type="application/xml")

    async def _status(self, request: web.Request) -> web.Response:
        barrier = self._barrier(request)
        code = 2 if barrier.state == "open" else 1
        return web.Response(
            text=f"<BarrierGateStatus><barrierGateStatus>{code}</barrierGateStatus>"
                 "</BarrierGateStatus>", content_type="application/xml")


# ---- cameras --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    status: int
    body: bytes
    seconds: float  # from the request sent to the answer read

    @property
    def opened(self) -> bool:
        """Whether a Vzenith camera would raise its barrier on this answer."""
        try:
            doc = json.loads(self.body)
        except ValueError:
            return False
        return (isinstance(doc, dict)
                and doc.get("Response_AlarmInfoPlate", {}).get("info") == "ok")

    def json(self) -> Any:
        return json.loads(self.body)


class PlateCamera:
    """A plate camera pushing from its own (loopback) source address."""

    def __init__(self, gate_id: str, vendor: str, source: str, listener: str, *,
                 secret: str | None = None, barrier: Barrier | None = None) -> None:
        self.gate_id = gate_id
        self.vendor = vendor
        self.source = source
        self.listener = listener.rstrip("/")
        self.secret = secret
        self.barrier = barrier
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self.heartbeats = 0
        self.told: list[dict[str, Any]] = []  # commands received in heartbeat replies

    async def __aenter__(self) -> PlateCamera:
        connector = aiohttp.TCPConnector(local_addr=(self.source, 0), limit=8)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _url(self, path: str) -> str:
        key = f"?key={self.secret}" if self.secret else ""
        return f"{self.listener}{path}{key}"

    async def post(self, path: str, body: bytes, content_type: str,
                   secret: str | None = None) -> PushResult:
        assert self._session is not None, "use the camera as an async context manager"
        url = self._url(path) if secret is None else f"{self.listener}{path}?key={secret}"
        started = time.perf_counter()
        async with self._session.post(url, data=body,
                                      headers={"Content-Type": content_type}) as r:
            data = await r.read()
        return PushResult(r.status, data, time.perf_counter() - started)

    async def read(self, plate: str, *, plate_id: str | None = None, offline: bool = False,
                   with_picture: bool = True, province_confidence: int | None = None,
                   picture_bytes: bytes | None = None) -> PushResult:
        """Push one plate read in the camera's own style."""
        pid = plate_id or f"{self.gate_id}-{next(self._ids)}"
        pic = picture_bytes if picture_bytes is not None else (
            picture(seed=hash(pid) & 0xFFFF) if with_picture else None)
        if self.vendor == "vzenith":
            body, ctype = vzenith_body(plate, pid, offline=offline, picture_bytes=pic,
                                       province_confidence=province_confidence), "application/json"
            result = await self.post("/push/vzenith", body, ctype)
            if result.opened and self.barrier is not None:
                self.barrier.command("open")  # the camera's relay raises the arm
        else:
            body, ctype = hikvision_body(plate, pid, pictures=[pic] if pic else [],
                                         province_confidence=province_confidence)
            result = await self.post("/push/hikvision", body, ctype)
        return result

    async def heartbeat(self) -> PushResult:
        self.heartbeats += 1
        if self.vendor == "vzenith":
            body = json.dumps({"heartbeat": {"countid": self.heartbeats}}).encode()
            result = await self.post("/push/vzenith", body, "application/json")
            told = result.json().get("Response_Heartbeat", {}).get("gate") \
                if result.status == 200 else None
            if told:
                self.told.append(told)
                if self.barrier is not None:
                    self.barrier.command(told["action"])
            return result
        xml = ("<EventNotificationAlert><eventType>heartBeat</eventType>"
               f"<dateTime>{time.strftime('%Y-%m-%dT%H:%M:%S')}</dateTime>"
               "</EventNotificationAlert>").encode()
        return await self.post("/push/hikvision", xml, "application/xml")

    async def loop_passed(self) -> PushResult:
        if self.barrier is not None:
            self.barrier.passed()
        return await self.post("/push/barrier", json.dumps({"loop": "passed"}).encode(),
                               "application/json")

    async def report_state(self, state: str) -> PushResult:
        return await self.post("/push/barrier", json.dumps({"state": state}).encode(),
                               "application/json")


class MqttGateController:
    """A gate controller on the site broker: publishes reads, states, loops and heartbeats
    on `<topic>/event` (QoS 1) and obeys `<topic>/command` with its barrier."""

    def __init__(self, gate_id: str, topic: str, host: str, port: int,
                 barrier: Barrier | None = None) -> None:
        self.gate_id = gate_id
        self.topic = topic
        self.host, self.port = host, port
        self.barrier = barrier or Barrier(gate_id)
        self.told: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._link: Any = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MqttGateController:
        from gateway.mqtt_loop import LinkOptions, MqttLink

        self._link = MqttLink(LinkOptions(self.host, self.port, f"sim-{self.gate_id}",
                                          protocol=4))
        await self._link.connect()
        await self._link.subscribe([(f"{self.topic}/command", 1)])
        self._task = asyncio.get_running_loop().create_task(self._obey(),
                                                            name=f"sim-{self.gate_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._link is not None:
            await self._link.disconnect(timeout_s=1.0)

    async def _obey(self) -> None:
        while True:
            for message in await self._link.next_batch():
                command = json.loads(message.payload)
                self.told.append(command)
                self.barrier.command(str(command.get("action", "")))
                await self.report_state()  # a controller reports every move (or none)

    async def _send(self, doc: dict[str, Any] | bytes) -> None:
        body = doc if isinstance(doc, bytes) else json.dumps(doc, ensure_ascii=False).encode()
        await self._link.publish(f"{self.topic}/event", body, qos=1)

    async def read(self, plate: str, *, plate_id: str | None = None, offline: bool = False,
                   province_confidence: int | None = None) -> None:
        doc: dict[str, Any] = {"type": "plate", "plate": plate, "offline": offline,
                               "plate_id": plate_id or f"{self.gate_id}-{next(self._ids)}"}
        if province_confidence is not None:
            doc["province_confidence"] = province_confidence
        await self._send(doc)

    async def heartbeat(self) -> None:
        await self._send({"type": "heartbeat"})

    async def report_state(self) -> None:
        await self._send({"type": "state", "state": self.barrier.state})

    async def loop_passed(self) -> None:
        self.barrier.passed()
        await self._send({"type": "loop"})
        await self.report_state()

    async def raw(self, payload: bytes) -> None:
        await self._send(payload)


def vzenith_body(plate: str, plate_id: str, *, offline: bool = False,
                 picture_bytes: bytes | None = None,
                 province_confidence: int | None = None) -> bytes:
    result: dict[str, Any] = {
        "license": plate, "colorType": 1, "type": 1, "confidence": 92,
        "plateid": plate_id, "isoffline": 1 if offline else 0,
        "timeStamp": {"Timeval": {"sec": int(time.time()), "usec": 0}},
    }
    if picture_bytes is not None:
        result["imageFile"] = base64.b64encode(picture_bytes).decode()
        result["imageFileLen"] = len(picture_bytes)
    if province_confidence is not None:
        result["provinceConfidence"] = province_confidence
    doc = {"AlarmInfoPlate": {"channel": 0, "deviceName": "IVS", "ipaddr": "",
                              "result": {"PlateResult": result}}}
    return json.dumps(doc, ensure_ascii=False).encode()


def hikvision_xml(plate: str, plate_id: str, province_confidence: int | None = None) -> bytes:
    extra = (f"<provinceConfidence>{province_confidence}</provinceConfidence>"
             if province_confidence is not None else "")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<EventNotificationAlert version="2.0" xmlns="http://www.isapi.org/ver20/XMLSchema">'
        f"<dateTime>{time.strftime('%Y-%m-%dT%H:%M:%S+08:00')}</dateTime>"
        f"<eventType>ANPR</eventType><UUID>{plate_id}</UUID>"
        f"<ANPR><licensePlate>{plate}</licensePlate><confidenceLevel>90</confidenceLevel>"
        f"<plateColor>blue</plateColor>{extra}</ANPR></EventNotificationAlert>"
    ).encode()


def hikvision_body(plate: str, plate_id: str, *, pictures: Sequence[bytes] = (),
                   province_confidence: int | None = None,
                   xml: bytes | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()

    def part(name: str, filename: str, ctype: str, data: bytes) -> None:
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\";"
                  f" filename=\"{filename}\"\r\nContent-Type: {ctype}\r\n\r\n".encode())
        out.write(data)
        out.write(b"\r\n")

    part("anpr.xml", "anpr.xml", "application/xml",
         xml if xml is not None else hikvision_xml(plate, plate_id, province_confidence))
    names = ("licensePlatePicture.jpg", "detectionPicture.jpg")
    for n, data in enumerate(pictures):
        part(names[n % 2].removesuffix(".jpg"), names[n % 2], "image/jpeg", data)
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


# Malformed pushes a camera (or anyone on the LAN) might send, by name.
MALFORMED: dict[str, tuple[str, bytes, str]] = {
    "json_truncated": ("/push/vzenith", b'{"AlarmInfoPlate": {"result": ', "application/json"),
    "json_not_object": ("/push/vzenith", b"[1, 2, 3]", "application/json"),
    "json_no_plate_result": ("/push/vzenith", b'{"AlarmInfoPlate": {"result": {}}}',
                             "application/json"),
    # Deeper than any JSON parser here goes: refused, never a server error.
    "json_nested_deep": ("/push/vzenith", b"[" * 5000 + b"]" * 5000, "application/json"),
    "xml_broken": ("/push/hikvision", b"<EventNotificationAlert><eventType>ANPR",
                   "application/xml"),
    "xml_entity": ("/push/hikvision",
                   b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
                   b"<EventNotificationAlert>&a;</EventNotificationAlert>", "application/xml"),
    "barrier_nonsense": ("/push/barrier", b'{"state": "sideways"}', "application/json"),
}


# ---- traffic --------------------------------------------------------------------------------

_CONFUSE = {"0": "D", "D": "0", "1": "I", "2": "Z", "5": "S", "6": "G", "8": "B", "B": "8",
            "S": "5", "Z": "2", "G": "6"}


@dataclass(frozen=True)
class Vehicle:
    plate: str
    vclass: str
    gates: str
    zones: str = "*"

    def fits(self, gate: str, area: str | None) -> bool:
        """Registered for this gate and the zone behind it (the usual traffic)."""
        gates, zones = self.gates.split(";"), self.zones.split(";")
        return (("*" in gates or gate in gates)
                and (area is None or "*" in zones or area in zones))


def load_vehicles(path: Path) -> list[Vehicle]:
    with path.open(encoding="utf-8") as f:
        return [Vehicle(r["plate"], r["class"], r["gates"], r.get("zones") or "*")
                for r in csv.DictReader(f)]


def ocr_error(plate: str, rng: random.Random) -> str:
    """One confusable character swapped, never the province."""
    spots = [i for i, c in enumerate(plate) if i > 0 and c in _CONFUSE]
    if not spots:
        return plate
    i = rng.choice(spots)
    return plate[:i] + _CONFUSE[plate[i]] + plate[i + 1:]


def unknown_plate(rng: random.Random) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    return "鄂" + rng.choice(letters) + "".join(rng.choice("0123456789") for _ in range(5))


@dataclass(frozen=True)
class Pass:
    """One vehicle at one gate: what the camera reads and how it pushes it."""

    gate: str
    read: str
    kind: str  # registered / unknown / barred / fuzzy / low_province / offline / duplicate


def traffic(vehicles: Sequence[Vehicle], gates: Sequence[str], n: int, seed: int = 1,
            areas: dict[str, str] | None = None) -> list[Pass]:
    """`n` passages at the entry gates, mostly vehicles registered for that gate (and the
    zone behind it, `areas`), the rest unknown, barred, misread or replayed."""
    rng = random.Random(seed)
    areas = areas or {}
    regular = [v for v in vehicles if v.vclass in ("official", "staff", "suv")]
    usable = {g: [v for v in regular if v.fits(g, areas.get(g))] or regular for g in gates}
    barred = [v for v in vehicles if v.vclass == "barred"]
    out: list[Pass] = []
    for _ in range(n):
        gate = rng.choice(gates)
        roll = rng.random()
        v = rng.choice(usable[gate])
        if roll < 0.04:
            out.append(Pass(gate, unknown_plate(rng), "unknown"))
        elif roll < 0.05 and barred:
            out.append(Pass(gate, rng.choice(barred).plate, "barred"))
        elif roll < 0.08:
            out.append(Pass(gate, ocr_error(v.plate, rng), "fuzzy"))
        elif roll < 0.09:
            out.append(Pass(gate, "鄂" + v.plate[1:], "low_province"))
        elif roll < 0.10:
            out.append(Pass(gate, v.plate, "offline"))
        elif roll < 0.11:
            out.append(Pass(gate, v.plate, "duplicate"))
        else:
            out.append(Pass(gate, v.plate, "registered"))
    return out


async def play(camera: PlateCamera, p: Pass) -> PushResult:
    if p.kind == "offline":
        return await camera.read(p.read, offline=True)
    if p.kind == "low_province":
        return await camera.read(p.read, province_confidence=40)
    if p.kind == "duplicate":
        pid = f"{camera.gate_id}-dup-{uuid.uuid4().hex[:8]}"
        await camera.read(p.read, plate_id=pid)
        return await camera.read(p.read, plate_id=pid)
    return await camera.read(p.read)


async def morning_rush(cameras: dict[str, PlateCamera], passes: Sequence[Pass],
                       per_hour: float) -> list[tuple[Pass, PushResult]]:
    """Play `passes` at `per_hour` vehicles an hour (Poisson arrivals), all gates at once."""
    rng = random.Random(7)
    results: list[tuple[Pass, PushResult]] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(p: Pass) -> None:
        results.append((p, await play(cameras[p.gate], p)))

    for p in passes:
        tasks.append(asyncio.create_task(one(p)))
        await asyncio.sleep(rng.expovariate(per_hour / 3600.0))
    await asyncio.gather(*tasks)
    return results


def _seed(registry: Any, csv_path: Path) -> list[Vehicle]:
    """Fill an empty registry from the sample CSV; the vehicles for the traffic."""
    try:
        if len(registry) == 0 and csv_path.is_file():
            registry.import_csv(csv_path.read_text(encoding="utf-8"), actor="demo",
                                now=time.time())
    finally:
        registry.close()
    return load_vehicles(csv_path) if csv_path.is_file() else []


class GateDemo:
    """The gates in the demo: simulated barriers and cameras on loopback addresses in
    place of the site's, the registry filled from the sample CSV if empty, and a slow
    stream of traffic (mostly registered, some unknown, fuzzy, offline and duplicate)."""

    HEARTBEAT_S = 4.0
    EVERY_S = 6.0  # one vehicle at some gate this often

    def __init__(self, site: Any, barriers: BarrierServer,
                 sources: dict[str, tuple[str, str]], vehicles: list[Vehicle]) -> None:
        self.site = site
        self.areas = {d.id: d.area for d in site.devices
                      if d.id in sources and getattr(d, "area", None)}
        self.barriers = barriers
        self.sources = sources
        self.vehicles = vehicles

    @classmethod
    async def start(cls, site: Any, data_dir: Path, csv_path: Path) -> GateDemo:
        from drivers.http_push.config import HttpPushDevice
        from gateway.vehicles.registry import DB_NAME, Registry

        gates = [d for d in site.devices if isinstance(d, HttpPushDevice) and d.enabled]
        barriers = BarrierServer([g.id for g in gates])
        await barriers.start()
        sources: dict[str, tuple[str, str]] = {}
        devices = []
        for d in site.devices:
            if isinstance(d, HttpPushDevice) and d.enabled:
                source = f"127.0.0.{21 + len(sources)}"
                sources[d.id] = (d.vendor, source)
                d = d.model_copy(update={
                    "address": source, "secret": None,
                    "gate_api": barriers.url(d.id) if d.gate_api else None})
            devices.append(d)
        vehicles = _seed(Registry(data_dir / DB_NAME, timezone=site.site.timezone), csv_path)
        return cls(site.model_copy(update={"devices": devices}), barriers, sources, vehicles)

    async def run(self, push_port: Any) -> None:
        """`push_port()` gives the listener's port once it is bound."""
        # The listener is rebuilt with the core: its port is asked for, not awaited.
        while push_port() is None:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        listener = f"http://127.0.0.1:{push_port()}"
        cams = {g: PlateCamera(g, vendor, source, listener, barrier=self.barriers.barriers[g])
                for g, (vendor, source) in self.sources.items()}
        entries = [g for g in cams if "out" not in g]
        passes = iter(itertools.cycle(traffic(self.vehicles, entries, 500, areas=self.areas)
                                      if self.vehicles and entries else []))
        try:
            for cam in cams.values():
                await cam.__aenter__()
            beat = drive = 0.0
            while True:
                now = time.monotonic()
                if now >= beat:
                    beat = now + self.HEARTBEAT_S
                    for cam in cams.values():
                        await cam.heartbeat()
                if now >= drive:
                    drive = now + self.EVERY_S
                    p = next(passes, None)
                    if p is not None:
                        result = await play(cams[p.gate], p)
                        log.info("demo gate=%s kind=%s status=%d", p.gate, p.kind,
                                 result.status)
                await asyncio.sleep(0.5)
        except aiohttp.ClientError as exc:
            log.warning("demo gate traffic stopped: %r", exc)
        finally:
            for cam in cams.values():
                await cam.__aexit__()
            await self.barriers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulators.gates",
                                     description="Simulated plate cameras at the gates.")
    parser.add_argument("--listener", default="127.0.0.1:8090", help="HOST:PORT of the listener")
    parser.add_argument("--csv", default="config/vehicles.csv")
    parser.add_argument("--gate", action="append", default=[],
                        help="ID=VENDOR@SOURCE_IP, e.g. gate-main-in=vzenith@127.0.0.21")
    parser.add_argument("--per-hour", type=float, default=600.0)
    parser.add_argument("--vehicles", type=int, default=100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    gates = [g.partition("=") for g in args.gate] or [("gate-main-in", "=", "vzenith@127.0.0.21")]

    async def run() -> None:
        cams: dict[str, PlateCamera] = {}
        for gid, _, spec in gates:
            vendor, _, source = spec.partition("@")
            cams[gid] = await PlateCamera(gid, vendor, source,
                                          f"http://{args.listener}").__aenter__()
        passes = traffic(load_vehicles(Path(args.csv)), list(cams), args.vehicles)
        for p, r in await morning_rush(cams, passes, args.per_hour):
            log.info("gate=%s kind=%s status=%d opened=%s ms=%.1f", p.gate, p.kind, r.status,
                     r.opened, r.seconds * 1000)
        for cam in cams.values():
            await cam.__aexit__()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
