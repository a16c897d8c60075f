"""A real serial line for tests: a pty whose far end is relayed to a TCP serial server (the
simulated meters speaking RTU on TCP), so the driver opens /dev/pts/N as it would open
/dev/ttyUSB0 and speaks RTU over it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def serial_line(host: str, port: int) -> AsyncIterator[str]:
    """Yields the path of the line's near end; bytes written there reach host:port."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    reader, writer = await asyncio.open_connection(host, port)
    loop = asyncio.get_running_loop()

    def from_line() -> None:
        try:
            data = os.read(master, 4096)
        except OSError:
            return
        writer.write(data)

    async def to_line() -> None:
        while data := await reader.read(4096):
            os.write(master, data)

    loop.add_reader(master, from_line)
    relay = asyncio.create_task(to_line(), name="serial-line-relay")
    try:
        yield path
    finally:
        loop.remove_reader(master)
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        writer.close()
        os.close(master)
        os.close(slave)
