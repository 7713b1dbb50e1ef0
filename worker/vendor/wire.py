"""The vendor transport: one keep-alive HTTP/1.1 connection for one thread, written by hand.

Why by hand (issue 13). httpx stays the client the code calls (``httpx.Request`` in,
``httpx.Response`` out, httpx's exceptions), but ``httpx.HTTPTransport`` under it runs every
request through httpcore's connection pool (locks, pool bookkeeping, a trace context per step)
and h11's event machinery. Measured with ``python -m bench.vendor_cost`` (one thread, a local
vendor answering at once, CPU of the calling thread): the HTTP exchange through
``httpx.HTTPTransport`` cost about 280 µs per call, the same bytes through a plain socket about
12 µs, and ``http.client`` about 67 µs. This transport is the plain socket plus the few rules a
client needs (:mod:`worker.vendor.http11`): the send dropped to the cost of building the
``httpx.Request`` and ``httpx.Response`` around it.

What it keeps from httpcore, so that :func:`worker.vendor.client.map_transport_errors` decides
"sent or not" exactly as before:

- connecting (DNS, TCP, TLS handshake with certificate and host name checks) fails as
  ``httpx.ConnectTimeout`` / ``httpx.ConnectError``: nothing was sent;
- once bytes may have left, every failure is ``ReadTimeout``, ``WriteTimeout``, ``ReadError``,
  ``WriteError`` or ``RemoteProtocolError``: the vendor may have received the request;
- a write that fails is not the end: as httpcore does, the response is read anyway (a server
  may answer and close early), and the read's failure is what is raised;
- a kept-alive connection is reused only if it has been idle under ``keepalive_expiry_s``
  (httpx's default, 5 s) and its socket is not readable (a readable idle socket means the server
  closed it, or sent what nobody asked for). Otherwise it is dropped and a new one opened
  *before* anything is sent. A request is never sent twice: if a connection dies under a
  request, that request fails (``RemoteProtocolError`` "Server disconnected without sending a
  response.", as httpcore says), because the vendor may have applied it; BindAxb's no-double-bind
  rule needs the same signed request re-sent later, for the nonce proof, not a silent copy.

Timeouts come from the request's ``timeout`` extension (``connect``, ``read``, ``write``), as
httpx's client puts them there. Connecting runs under Python's socket timeout; once connected,
a plain TCP socket's read and write timeouts are the kernel's (:mod:`worker.socket_timeouts`:
no poll before each syscall), set once per connection and again only when a request asks for
others; TLS sockets keep Python's. One transport is one connection: give each thread its own
(:class:`~worker.vendor.sender.ThreadSender` does); a transport shared by threads serialises them.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable

import httpx

from worker.socket_timeouts import use_kernel_timeouts
from worker.vendor.http11 import TIMED_OUT, Answer, Reader, request_bytes

__all__ = ["WireTransport"]

KEEPALIVE_EXPIRY_S = 5.0  # httpx.Limits' default keepalive_expiry
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Connection:
    """One open socket to one origin. Plain TCP: blocking, with the kernel's read and write
    timeouts. TLS: Python's timeout, set before the send and again before the read (CPython
    retries a blocking TLS read that the kernel timed out, so SO_RCVTIMEO would never fire)."""

    def __init__(self, origin: tuple[str, str, int], sock: socket.socket) -> None:
        self.origin = origin
        self.sock = sock
        self.idle_since = time.monotonic()
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._kernel_timeouts: tuple[float | None, float | None] | None = None

    def reusable(self, origin: tuple[str, str, int], now: float, expiry_s: float) -> bool:
        if origin != self.origin or now - self.idle_since > expiry_s:
            return False
        if self._tls and self.sock.pending():  # type: ignore[attr-defined]
            return False
        return not self._poll.poll(0)  # readable while idle: closed by the server (or garbage)

    def exchange(
        self,
        data: bytes,
        request: httpx.Request,
        *,
        read_s: float | None,
        write_s: float | None,
        head_only: bool,
    ) -> Answer:
        """Send ``data``, read the answer: timeouts as the write and read timeouts say."""
        sock = self.sock
        if self._tls:
            sock.settimeout(write_s)
        elif self._kernel_timeouts != (read_s, write_s):
            use_kernel_timeouts(sock, read_s, write_s)
            self._kernel_timeouts = (read_s, write_s)
        try:
            sock.sendall(data)
        except TIMED_OUT as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out", request=request) from exc
        except OSError:
            pass  # as httpcore: the server may have answered before closing; the read tells
        if self._tls:
            sock.settimeout(read_s)
        return Reader(sock, request).answer(head_only=head_only)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # closing never matters more than the error at hand
            self.sock.close()


class WireTransport(httpx.BaseTransport):
    """An ``httpx.BaseTransport`` over one kept-alive HTTP/1.1 (or HTTPS) connection."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
    ) -> None:
        """``ssl_context``: a context, or a function returning one (called at the first https
        connection); by default httpx's own (certifi, host names checked, ``SSL_CERT_FILE``)."""
        self._ssl_context = ssl_context
        self._keepalive_expiry_s = keepalive_expiry_s
        self._conn: _Connection | None = None
        self._lock = threading.Lock()

    def _tls(self) -> ssl.SSLContext:
        ctx = self._ssl_context
        if ctx is None:
            ctx = self._ssl_context = httpx.create_ssl_context()
        elif not isinstance(ctx, ssl.SSLContext):
            ctx = self._ssl_context = ctx()
        return ctx

    def _connect(
        self, origin: tuple[str, str, int], timeout_s: float | None, request: httpx.Request
    ) -> _Connection:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout_s)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._tls().wrap_socket(sock, server_hostname=host)  # handshake, under timeout_s
        except TimeoutError as exc:
            sock.close()
            raise httpx.ConnectTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:  # ssl.SSLError (a bad certificate too) is an OSError
            sock.close()
            raise httpx.ConnectError(str(exc), request=request) from exc
        return _Connection(origin, sock)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{scheme}://'.")
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout") or {}
        data = request_bytes(request)  # refused here (LocalProtocolError) before anything is sent
        head_only = request.method == "HEAD"
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and not conn.reusable(origin, time.monotonic(), self._keepalive_expiry_s):
                conn.close()
                conn = None
            if conn is None:
                conn = self._connect(origin, timeouts.get("connect"), request)
            try:
                answer = conn.exchange(
                    data,
                    request,
                    read_s=timeouts.get("read"),
                    write_s=timeouts.get("write"),
                    head_only=head_only,
                )
            except BaseException:
                conn.close()
                raise
            if answer.keep:
                conn.idle_since = time.monotonic()
                self._conn = conn
            else:
                conn.close()
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": answer.http_version, "reason_phrase": answer.reason},
            request=request,
        )

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
