"""HTTP/1.1 on one socket, by hand: the request's bytes, and the response read back whole.

The framing rules of RFC 9112 that a client needs, checked as h11 (httpcore's parser) checks
them, and failures raised as the httpx exceptions httpcore's would become:

- a request head with CR, LF or NUL in a header or a name that is not a token:
  ``httpx.LocalProtocolError`` (nothing is sent);
- a socket that times out: ``httpx.ReadTimeout`` / ``httpx.WriteTimeout``; any other socket
  error (reset, TLS alert): ``httpx.ReadError`` / ``httpx.WriteError``. The reader sets no
  timeout itself: it reads the socket as its owner set it up. A timeout is Python's own
  (``TimeoutError``) on a socket with ``settimeout`` (TLS, in :mod:`worker.vendor.wire`), or the
  kernel's on a blocking plain socket (``SO_RCVTIMEO``: the read gives up with ``EAGAIN``,
  ``BlockingIOError``); a non-blocking TLS socket says ``ssl.SSLWantReadError``;
- the peer closing before a whole response, a status line that is not ``HTTP/1.x NNN``, a
  header line without a colon, a bad ``Content-Length`` or chunk size, an unsupported
  ``Transfer-Encoding``, a head over 100 KiB: ``httpx.RemoteProtocolError``.

Used by :class:`worker.vendor.wire.WireTransport`; see there for why it exists.
"""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass

import httpx

__all__ = ["TIMED_OUT", "Answer", "Reader", "request_bytes"]

MAX_HEAD_BYTES = 100 * 1024  # h11's max_incomplete_event_size, as httpcore sets it
_RECV_BYTES = 64 * 1024
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")

# What a socket operation raises when its timeout ran out: Python's timeout, the kernel's
# (SO_RCVTIMEO / SO_SNDTIMEO on a blocking socket: EAGAIN), or a non-blocking TLS socket's "want".
TIMED_OUT = (TimeoutError, BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def request_bytes(request: httpx.Request) -> bytes:
    """The request on the wire: its head, and its body (framed as its headers say)."""
    raw = request.headers.raw
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    chunked = False
    for name, value in raw:
        if not _TOKEN.fullmatch(name):
            raise httpx.LocalProtocolError(f"Illegal header name {name!r}", request=request)
        if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
            chunked = True
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    lines = len(raw) + 2
    if head.count(b"\n") != lines or head.count(b"\r") != lines or b"\0" in head:
        # A value (or the target) holding CR, LF or NUL would split the head: h11 refuses it.
        raise httpx.LocalProtocolError("Illegal header value or request target", request=request)
    body = request.read()
    if chunked:
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    return head + body if body else head


@dataclass(frozen=True, slots=True)
class Answer:
    """A response read whole: ``keep`` says whether the connection may carry another request."""

    status: int
    http_version: bytes
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep: bool


class Reader:
    """Reads responses from one connected socket; bytes past a response stay in :attr:`rest`."""

    def __init__(self, sock: socket.socket, request: httpx.Request) -> None:
        self.sock = sock
        self.request = request
        self.rest = b""

    def _more(self) -> bytes:
        try:
            return self.sock.recv(_RECV_BYTES)
        except TIMED_OUT as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=self.request) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc), request=self.request) from exc

    def _cut(self, message: str) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(message, request=self.request)

    def answer(self, *, head_only: bool) -> Answer:
        """The next final response (1xx answers skipped), its body read to the end (under the
        socket's own read timeout)."""
        while True:
            status, version, reason, headers, connection, framing = self._head()
            if status >= 200:
                break
            if status == 101:
                raise self._cut("Unexpected 101 Switching Protocols")
        keep = version == b"1" and b"close" not in connection
        if head_only or status in (204, 304):
            body = b""
        elif framing == "chunked":
            body = self._chunked()
        elif framing is not None:
            body = self._exactly(int(framing))
        else:  # no framing: the body ends when the server closes the connection
            body = self._to_eof()
            keep = False
        return Answer(status, b"HTTP/1." + version, reason, headers, body, keep and not self.rest)

    def _head(self) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]], bytes, str | None]:
        buf = self.rest
        while True:
            end = _HEAD_END.search(buf)
            if end is not None:
                break
            if len(buf) > MAX_HEAD_BYTES:
                raise self._cut("Response head too large")
            chunk = self._more()
            if not chunk:
                if buf:
                    raise self._cut("peer closed connection without sending complete message head")
                raise self._cut("Server disconnected without sending a response.")
            buf += chunk
        self.rest = buf[end.end() :]
        lines = buf[: end.start()].split(b"\n")
        status_line = _STATUS_LINE.fullmatch(lines[0].rstrip(b"\r"))
        if status_line is None:
            raise self._cut(f"illegal status line: {lines[0][:80]!r}")
        version, status, reason = status_line.group(1), int(status_line.group(2)), status_line.group(3) or b""
        headers: list[tuple[bytes, bytes]] = []
        for raw_line in lines[1:]:
            line = raw_line.rstrip(b"\r")
            if line[:1] in (b" ", b"\t"):  # obsolete line folding: part of the previous value
                if not headers:
                    raise self._cut("illegal header line: folded first line")
                name, value = headers.pop()
                headers.append((name, value + b" " + line.strip(b" \t")))
                continue
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise self._cut(f"illegal header line: {line[:80]!r}")
            headers.append((name, value.strip(b" \t")))
        return status, version, reason, headers, *self._framing(headers)

    def _framing(self, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, str | None]:
        """``(connection tokens, framing)``: framing is ``"chunked"``, a length, or None (to EOF)."""
        connection = b""
        lengths: set[bytes] = set()
        encodings: list[bytes] = []
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"connection":
                connection += b"," + value.lower()
            elif lowered == b"content-length":
                lengths.update(v.strip() for v in value.split(b","))
            elif lowered == b"transfer-encoding":
                encodings += [v.strip().lower() for v in value.split(b",")]
        if encodings:
            if encodings != [b"chunked"]:
                raise self._cut("unsupported Transfer-Encoding")
            return connection, "chunked"
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise self._cut("bad Content-Length")
            return connection, next(iter(lengths)).decode()
        return connection, None

    def _exactly(self, length: int) -> bytes:
        buf = self.rest
        while len(buf) < length:
            chunk = self._more()
            if not chunk:
                raise self._cut(
                    "peer closed connection without sending complete message body: "
                    f"received {len(buf)} bytes, expected {length}"
                )
            buf += chunk
        self.rest = buf[length:]
        return buf[:length]

    def _line(self) -> bytes:
        buf = self.rest
        while (end := buf.find(b"\n")) < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise self._cut("chunk line too large")
            chunk = self._more()
            if not chunk:
                raise self._cut("peer closed connection without sending complete message body")
            buf += chunk
        self.rest = buf[end + 1 :]
        return buf[:end].rstrip(b"\r")

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = _CHUNK_SIZE.fullmatch(self._line())
            if size is None:
                raise self._cut("illegal chunk size")
            length = int(size.group(1), 16)
            if length == 0:
                break
            parts.append(self._exactly(length))
            if self._line():
                raise self._cut("chunk not followed by CRLF")
        while self._line():  # trailers, up to the blank line
            pass
        return b"".join(parts)

    def _to_eof(self) -> bytes:
        parts = [self.rest]
        while chunk := self._more():
            parts.append(chunk)
        self.rest = b""
        return b"".join(parts)
