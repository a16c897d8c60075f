"""The throughput benchmark's load generator: routine heat-detector reports at a sustained
rate, plus timed alarms.

Routine QoS 0 reports go as pre-encoded PUBLISH frames written in batches on a plain
socket: paho costs tens of microseconds per publish, and the load generator must not be
what limits a 10,000/s run on a 2-core machine. Alarms (QoS 1, acknowledged) go through
the gateway's own MQTT stack, from detectors of their own so each device's numbering
stays in order on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import struct
import time

from gateway.mqtt_loop import LinkOptions, MqttLink
from simulators.heat_detectors import AMBIENT_C, TOPIC_PREFIX

_TICK_S = 0.005


def encode_remaining_length(n: int) -> bytes:
    """The MQTT variable-length integer (1 to 4 bytes, 7 bits each, low group first)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def encode_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def encode_connect(client_id: str, keepalive_s: int) -> bytes:
    body = encode_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive_s)
    body += encode_string(client_id)
    return b"\x10" + encode_remaining_length(len(body)) + body


class FrameWriter:
    """One clean MQTT 3.1.1 session that only writes pre-encoded QoS 0 frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 keepalive_s: int) -> None:
        self._reader, self._writer = reader, writer
        self._pinger = asyncio.create_task(self._ping(keepalive_s))
        self._drainer = asyncio.create_task(self._discard())

    @classmethod
    async def connect(cls, host: str, port: int, client_id: str,
                      keepalive_s: int = 15) -> FrameWriter:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(encode_connect(client_id, keepalive_s))
            ack = await reader.readexactly(4)
        if ack[0] != 0x20 or ack[3] != 0:
            writer.close()
            raise ConnectionError(f"broker refused the load generator: code {ack[3]}")
        return cls(reader, writer, keepalive_s)

    def write(self, frames: bytes) -> None:
        self._writer.write(frames)

    async def drain(self) -> None:
        await self._writer.drain()

    async def _ping(self, keepalive_s: int) -> None:
        while True:
            await asyncio.sleep(keepalive_s / 2)
            self._writer.write(b"\xc0\x00")

    async def _discard(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await self._reader.read(4096):
                pass

    async def close(self) -> None:
        self._pinger.cancel()
        self._drainer.cancel()
        with contextlib.suppress(ConnectionError):
            self._writer.write(b"\xe0\x00")
            await self._writer.drain()
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


class BlastResult(dict[str, int]):
    """Messages sent per device, plus what the sending cost."""

    def __init__(self, counts: dict[str, int], *, wall_s: float, cpu_s: float, alarms: int):
        super().__init__(counts)
        self.wall_s = wall_s
        self.cpu_s = cpu_s  # process CPU: run `blast` in its own process to read it alone
        self.alarms = alarms

    @property
    def total(self) -> int:
        return sum(self.values())

    @property
    def rate_per_s(self) -> float:
        return self.total / self.wall_s if self.wall_s else 0.0


async def blast(
    host: str,
    port: int,
    rate_per_s: float,
    seconds: float,
    devices: list[str],
    *,
    alarm_devices: list[str] | None = None,
    alarm_every: float | None = None,
    client_id: str = "bench-heat-blast",
) -> BlastResult:
    """Routine QoS 0 reports at a sustained total rate, round-robin over `devices`.

    Every `alarm_every` seconds one of `alarm_devices` sends a QoS 1 report that flips
    its alarm flag and holds `sent_at` (epoch seconds), so a receiver can measure
    latency. Seq per device starts at 1 and rises by 1, so the receiver can count what it
    lost.
    """
    if not devices:
        raise ValueError("blast needs at least one device")
    alarm_devices = alarm_devices or []
    if alarm_every and not alarm_devices:
        raise ValueError("alarms need alarm_devices of their own")
    frames_out = await FrameWriter.connect(host, port, client_id)
    alarms = MqttLink(LinkOptions(host, port, f"{client_id}-alarms", max_inflight=100))
    await alarms.connect()
    seqs = dict.fromkeys([*devices, *alarm_devices], 0)
    heads = [(d, encode_string(TOPIC_PREFIX + d)) for d in devices]
    tails = [
        b',"temp_c":%.2f,"alarm":false,"fault":null,"battery_pct":%d}'
        % (random.Random(d).uniform(*AMBIENT_C), 90)
        for d in devices
    ]
    in_alarm = dict.fromkeys(alarm_devices, False)
    acks: list[asyncio.Future[object]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    cpu0 = time.process_time()
    sent = turn = alarm_turn = 0
    next_alarm = start + alarm_every if alarm_every else math.inf
    # Falling behind (a busy core) must not turn into one giant write.
    max_batch = max(1, int(rate_per_s * 0.05))
    try:
        while (now := loop.time()) - start < seconds:
            due = min(max_batch, int(rate_per_s * (now - start)) - sent)
            if due > 0:
                ts = b"%.3f" % time.time()
                frames = []
                for _ in range(due):
                    i = turn % len(heads)
                    turn += 1
                    device, head = heads[i]
                    seq = seqs[device] + 1
                    seqs[device] = seq
                    payload = b'{"seq":%d,"ts":%s%s' % (seq, ts, tails[i])
                    frames.append(b"\x30" + encode_remaining_length(len(head) + len(payload)))
                    frames.append(head)
                    frames.append(payload)
                frames_out.write(b"".join(frames))
                sent += due
                await frames_out.drain()
            if now >= next_alarm:
                next_alarm += alarm_every or math.inf
                device = alarm_devices[alarm_turn % len(alarm_devices)]
                alarm_turn += 1
                seqs[device] += 1
                in_alarm[device] = not in_alarm[device]
                doc = {"seq": seqs[device], "ts": round(time.time(), 3),
                       "temp_c": 61.5 if in_alarm[device] else 24.0,
                       "alarm": in_alarm[device], "fault": None, "battery_pct": 90,
                       "sent_at": time.time()}
                acks.append(alarms.publish(TOPIC_PREFIX + device, json.dumps(doc).encode(),
                                           qos=1))
            await asyncio.sleep(_TICK_S)
        await frames_out.drain()
        wall = loop.time() - start
        async with asyncio.timeout(10):
            await asyncio.gather(*acks)
    finally:
        await frames_out.close()
        await alarms.disconnect()
    cpu = time.process_time() - cpu0
    return BlastResult(seqs, wall_s=wall, cpu_s=cpu, alarms=len(acks))
