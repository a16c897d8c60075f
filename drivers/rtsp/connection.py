"""One RTSP/1.0 connection over TCP: requests answered by CSeq, and the interleaved RTP
of the video channel handed to a callback in place, parsed in one pass per read. Anything
that is neither an RTSP answer nor a sane interleaved frame ends the connection with the
reason; nothing is buffered without bound."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from drivers.rtsp.messages import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    Response,
    build_request,
    parse_response,
)
from drivers.rtsp.rtp import INTERLEAVED_HEADER_BYTES, RtpPacket, parse_rtp
from gateway.errors import PayloadRejected, ProtocolError, Unreachable

# Cameras packetise to the network MTU (~1400 bytes); a few send up to ~9 KiB over TCP.
# An interleaved frame above this is not video from any camera: refuse it before reading it.
MAX_INTERLEAVED_BYTES = 32 * 1024

# (arrival time, packet, the bytes its offsets point into)
RtpHandler = Callable[[float, RtpPacket, bytes], None]
# (reason, detail): a bounded label and a short text, for the sink's `rejected`.
Rejected = Callable[[str, str], None]


class RtspConnection(asyncio.Protocol):
    def __init__(self, on_rtp: RtpHandler, on_rejected: Rejected, rtp_channel: int = 0) -> None:
        self.on_rtp = on_rtp
        self.on_rejected = on_rejected
        self.rtp_channel = rtp_channel
        self.transport: asyncio.Transport | None = None
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failure: ProtocolError | Unreachable | None = None
        self._buf = b""  # the start of a frame or answer the last read cut off
        self._cseq = 0
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._loop = asyncio.get_running_loop()
        self.bytes_in = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.failure is None:
            self.failure = Unreachable(f"connection lost: {exc}" if exc else
                                       "the camera closed the connection")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(self.failure)
        self._pending.clear()
        if not self.ended.done():
            self.ended.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: PayloadRejected) -> None:
        self.on_rejected(exc.reason, exc.detail)
        self.failure = ProtocolError(str(exc))
        self._buf = b""
        self.abort()

    def data_received(self, data: bytes) -> None:
        # The hot path: ~400 packets a second per camera. The leftover of the last read is
        # joined to this one in a single copy, and what the loop reads per packet is held
        # in locals; one arrival time serves every packet of the read.
        self.bytes_in += len(data)
        if self._buf:
            data = self._buf + data
        now = self._loop.time()
        on_rtp, channel = self.on_rtp, self.rtp_channel
        pos, n = 0, len(data)
        try:
            while pos < n:
                if data[pos] == 0x24:  # '$': an interleaved frame
                    if n - pos < INTERLEAVED_HEADER_BYTES:
                        break
                    size = (data[pos + 2] << 8) | data[pos + 3]
                    if size > MAX_INTERLEAVED_BYTES:
                        raise PayloadRejected("rtp_frame_too_large", f"{size} bytes")
                    start = pos + INTERLEAVED_HEADER_BYTES
                    end = start + size
                    if end > n:
                        break
                    if data[pos + 1] == channel:
                        on_rtp(now, parse_rtp(data, start, end), data)
                    pos = end
                else:
                    parsed = parse_response(data[pos : pos + MAX_HEADER_BYTES + MAX_BODY_BYTES
                                                 + 4])
                    if parsed is None:
                        break
                    response, used = parsed
                    pos += used
                    self._answered(response)
                    channel = self.rtp_channel  # an answer may have set it
        except PayloadRejected as exc:
            self._fail(exc)
            return
        self._buf = data[pos:] if pos < n else b""

    def _answered(self, response: Response) -> None:
        cseq = response.cseq
        fut = self._pending.pop(cseq, None) if cseq is not None else None
        if fut is None and len(self._pending) == 1:  # a camera that echoes no CSeq
            fut = self._pending.pop(next(iter(self._pending)))
        if fut is not None and not fut.done():
            fut.set_result(response)

    async def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                      timeout_s: float = 5.0) -> Response:
        if self.transport is None or self.failure is not None:
            raise self.failure or Unreachable("not connected")
        self._cseq += 1
        cseq = self._cseq
        fut: asyncio.Future[Response] = self._loop.create_future()
        self._pending[cseq] = fut
        self.transport.write(build_request(method, url, cseq, headers))
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            raise Unreachable(f"no answer to {method} in {timeout_s:g} s") from None
        finally:
            self._pending.pop(cseq, None)

    async def wait_closed(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self.ended)
