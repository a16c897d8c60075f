"""A real serial line for tests: a pty whose far end is relayed to a TCP serial server (the
simulated meters speaking RTU on TCP), so the driver opens /dev/pts/N as it would open
/dev/ttyUSB0 and speaks RTU over it.

With `baud`, the relay paces the line as RS-485 would: one direction at a time (half
duplex), each frame delivered once its last character is on the wire, a character taking
`bits_per_char` bit times (10 for 8N1, 11 with parity or a second stop bit). A pty alone
carries bytes at memory speed whatever baud rate the port is opened with."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator, Callable


@contextlib.asynccontextmanager
async def serial_line(host: str, port: int, *, baud: int | None = None,
                      bits_per_char: int = 10) -> AsyncIterator[str]:
    """Yields the path of the line's near end; bytes written there reach host:port."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    reader, writer = await asyncio.open_connection(host, port)
    loop = asyncio.get_running_loop()
    upstream: asyncio.Queue[bytes] = asyncio.Queue()
    wire_free = 0.0  # loop time at which the line is quiet again

    async def on_the_wire(data: bytes, deliver: Callable[[bytes], object]) -> None:
        nonlocal wire_free
        if baud is not None:
            start = max(loop.time(), wire_free)
            wire_free = start + len(data) * bits_per_char / baud
            await asyncio.sleep(wire_free - loop.time())
        deliver(data)

    def from_line() -> None:
        try:
            data = os.read(master, 4096)
        except OSError:
            return
        upstream.put_nowait(data)

    async def to_server() -> None:
        while True:
            await on_the_wire(await upstream.get(), writer.write)

    async def to_line() -> None:
        while data := await reader.read(4096):
            await on_the_wire(data, lambda chunk: os.write(master, chunk))

    loop.add_reader(master, from_line)
    relays = [asyncio.create_task(to_line(), name="serial-line-relay"),
              asyncio.create_task(to_server(), name="serial-line-relay-up")]
    try:
        yield path
    finally:
        loop.remove_reader(master)
        for relay in relays:
            relay.cancel()
        for relay in relays:
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        writer.close()
        os.close(master)
        os.close(slave)
