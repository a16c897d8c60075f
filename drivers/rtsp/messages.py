"""RTSP/1.0 messages (RFC 2326): requests built, responses parsed within size limits. A
camera that answers with garbage, headers without end or a body of absurd length is
rejected with a bounded reason, never buffered without limit."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import PayloadRejected

# Real cameras answer in well under 2 KiB of headers; 8 KiB leaves room for long
# WWW-Authenticate and Transport lines without letting a broken one fill memory.
MAX_HEADER_BYTES = 8 * 1024
MAX_HEADERS = 64
# An SDP is a few hundred bytes; 64 KiB is generous for any DESCRIBE body.
MAX_BODY_BYTES = 64 * 1024
_PREFIX = b"RTSP/1.0 "
USER_AGENT = "compound-gateway"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names, the first value of each
    authenticate: tuple[str, ...]  # every WWW-Authenticate value, in order
    body: bytes

    @property
    def cseq(self) -> int | None:
        try:
            return int(self.headers.get("cseq", ""))
        except ValueError:
            return None


def parse_response(buf: bytes | bytearray) -> tuple[Response, int] | None:
    """The first response in `buf` and the bytes it took, or None while it is incomplete."""
    head = bytes(buf[: len(_PREFIX)])
    if not _PREFIX.startswith(head) and not head.startswith(_PREFIX):
        raise PayloadRejected("rtsp_garbage", repr(head[:16]))
    end = buf.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
    if end < 0:
        if len(buf) > MAX_HEADER_BYTES:
            raise PayloadRejected("rtsp_header_too_large", f"over {MAX_HEADER_BYTES} bytes")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or len(status_line[1]) != 3 or not status_line[1].isdigit():
        raise PayloadRejected("rtsp_status_line", lines[0][:60])
    if len(lines) - 1 > MAX_HEADERS:
        raise PayloadRejected("rtsp_header_too_large", f"{len(lines) - 1} header lines")
    headers: dict[str, str] = {}
    authenticate: list[str] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise PayloadRejected("rtsp_header_line", line[:60])
        key = name.strip().lower()
        value = value.strip()
        headers.setdefault(key, value)
        if key == "www-authenticate":
            authenticate.append(value)
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit() or len(length_text) > 9:
        raise PayloadRejected("rtsp_content_length", length_text[:20])
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise PayloadRejected("rtsp_body_too_large", f"{length} bytes")
    total = end + 4 + length
    if len(buf) < total:
        return None
    reason = status_line[2] if len(status_line) > 2 else ""
    body = bytes(buf[end + 4 : total])
    return Response(int(status_line[1]), reason, headers, tuple(authenticate), body), total


def build_request(method: str, url: str, cseq: int, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {url} RTSP/1.0", f"CSeq: {cseq}", f"User-Agent: {USER_AGENT}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def session_of(value: str) -> tuple[str, float | None]:
    """A Session header: the id and its timeout in seconds (RFC 2326 §12.37)."""
    ident, _, params = value.partition(";")
    timeout: float | None = None
    for param in params.split(";"):
        key, _, val = param.strip().partition("=")
        if key.lower() == "timeout":
            try:
                timeout = float(val)
            except ValueError:
                timeout = None
            if timeout is not None and not 1 <= timeout <= 3600:
                timeout = None
    return ident.strip(), timeout
