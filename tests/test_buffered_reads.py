"""Buffered socket reads under paho: paho sees exactly the byte stream the broker sent,
however the kernel splits it, and every message arrives, also when the bytes wait in
the buffer while the socket is quiet (a read burst cut short, back-pressure)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

import gateway.mqtt_loop as mqtt_loop
from gateway.mqtt_loop import BufferedClient
from tests.brokers import Mosquitto
from tests.mqtt_client import mqtt_client


def _reader(sock: socket.socket) -> BufferedClient:
    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="buffer-test")
    client._sock = sock  # the one attribute paho's `_sock_recv` reads
    return client


@settings(max_examples=200, deadline=None)
@given(
    stream=st.binary(min_size=1, max_size=5000),
    chunks=st.lists(st.integers(1, 700), min_size=1, max_size=40),
    asks=st.lists(st.integers(1, 300), min_size=1, max_size=60),
)
def test_paho_is_handed_the_stream_as_sent(
    stream: bytes, chunks: list[int], asks: list[int]
) -> None:
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        reader = _reader(a)
        pieces, i, c = [], 0, 0
        while i < len(stream):  # the sender's writes, of random sizes
            n = chunks[c % len(chunks)]
            b.sendall(stream[i:i + n])
            i, c = i + n, c + 1
        got = bytearray()
        k = 0
        while len(got) < len(stream):
            piece = reader._sock_recv(asks[k % len(asks)])
            assert 0 < len(piece) <= asks[k % len(asks)]
            pieces.append(piece)
            got += piece
            k += 1
        assert bytes(got) == stream
        assert reader.buffered == 0
        with pytest.raises(BlockingIOError):  # nothing more: paho's "try again later"
            reader._sock_recv(1)
        b.close()
        assert reader._sock_recv(1) == b""  # the peer closed: paho's "connection lost"
    finally:
        a.close()
        b.close()


async def test_every_message_arrives_when_bursts_are_cut_short_and_reading_pauses(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny limits: most wake-ups end with bytes left in the buffer, and the reader is
    # paused and resumed many times.
    monkeypatch.setattr(mqtt_loop, "READ_BURST", 3)
    monkeypatch.setattr(mqtt_loop, "PAUSE_AT", 7)
    total = 2000
    async with (
        # A long keep-alive: no PINGRESP comes to wake a reader that forgot its buffer.
        mqtt_client(mosquitto.host, mosquitto.port, "buffer-sub", keepalive_s=120) as sub,
        mqtt_client(mosquitto.host, mosquitto.port, "buffer-pub") as pub,
    ):
        await sub.subscribe([("buffer/test", 1)])
        sends = [pub.publish("buffer/test", str(n).encode(), qos=1) for n in range(total)]
        await asyncio.wait_for(asyncio.gather(*sends), 30)
        got: list[int] = []
        async with asyncio.timeout(20):
            while len(got) < total:
                got += [int(m.payload) for m in await sub.next_batch()]
                await asyncio.sleep(0)  # let the reader fill up and pause again
    assert got == list(range(total))


def test_a_message_info_makes_its_condition_only_when_waited_on() -> None:
    import threading

    import paho.mqtt.client as paho

    from gateway.mqtt_loop import LazyMessageInfo

    received = paho.MQTTMessage(7, b"furong/fire/heat/hd-01")
    assert isinstance(received.info, LazyMessageInfo)
    with pytest.raises(AttributeError):
        object.__getattribute__(received.info, "_condition")  # none made for a read

    info = LazyMessageInfo(9)
    assert list(info) == [paho.MQTTErrorCode.MQTT_ERR_SUCCESS, 9] and not info.is_published()
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: (info.wait_for_publish(10), waited.append(True)))
    waiter.start()
    info._set_as_published()  # paho, on the PUBACK
    waiter.join(15)
    assert waited == [True] and info.is_published()
    with pytest.raises(AttributeError):
        _ = info.no_such_field  # type: ignore[attr-defined]


def test_messages_go_straight_to_on_message_and_per_topic_callbacks_still_work() -> None:
    import paho.mqtt.client as paho

    client = BufferedClient(CallbackAPIVersion.VERSION2, client_id="dispatch-test")
    heard: list[tuple[str, bytes]] = []
    client.on_message = lambda _c, _u, m: heard.append(("any", m.payload))
    message = paho.MQTTMessage(1, b"furong/fire/heat/hd-01")
    message.payload = b"first"
    client._handle_on_message(message)  # paho calls this for every PUBLISH it reads
    assert heard == [("any", b"first")]

    # A per-topic callback (paho's own dispatch): it, and not on_message, hears its topic;
    # other topics still reach on_message.
    client.message_callback_add("furong/fire/heat/#",
                                lambda _c, _u, m: heard.append(("heat", m.payload)))
    message.payload = b"second"
    client._handle_on_message(message)
    other = paho.MQTTMessage(2, b"furong/gate/g-01")
    other.payload = b"third"
    client._handle_on_message(other)
    assert heard[1:] == [("heat", b"second"), ("any", b"third")]
