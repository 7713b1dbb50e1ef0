"""A raw TCP (or TLS) server that answers each request as its script says: keep-alive answers,
closes, resets, silence, garbage, half bodies. It counts connections and requests, so a test
sees whether a connection was reused and whether a request reached it (once, or twice)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

OK_BODY = (
    b'{"RequestId":"R-1","Code":"OK","Message":"OK",'
    b'"SecretBindDTO":{"SecretNo":"17100000000","SubsId":"100001","Extension":""}}'
)


def answer(body: bytes = OK_BODY, *, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


OK = answer()

# A step gets the connection and returns whether the server keeps reading from it.
Step = Callable[[socket.socket], bool]


def send(data: bytes, *, then_close: bool = False) -> Step:
    def step(conn: socket.socket) -> bool:
        conn.sendall(data)
        if then_close:
            _close(conn)
        return not then_close

    return step


def close_after(data: bytes, delay_s: float) -> Step:
    """Answer, then close the idle connection from the server side a moment later."""

    def step(conn: socket.socket) -> bool:
        conn.sendall(data)
        time.sleep(delay_s)
        _close(conn)
        return False

    return step


def hang_up() -> Step:
    """Read the request, close without a word: the request reached the server."""
    return send(b"", then_close=True)


def reset() -> Step:
    """Read the request, then reset the connection (RST)."""

    def step(conn: socket.socket) -> bool:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        return False

    return step


def silent(stop: threading.Event) -> Step:
    def step(conn: socket.socket) -> bool:
        stop.wait(30)
        return False

    return step


def _close(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)
    conn.close()


class ScriptedServer:
    """``steps`` are used in order, one per request received (the last one repeats)."""

    def __init__(
        self, steps: list[Step], tls: ssl.SSLContext | None = None, *, tls_silent: bool = False
    ) -> None:
        self.steps = list(steps)
        self.tls = tls
        self.tls_silent = tls_silent  # accept TCP, never answer the TLS handshake
        self.connections = 0
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:  # counted before it can answer: a test reads the count after the answer
                self.connections += 1
                self._threads.append(t)
            t.start()

    def _next_step(self, head: bytes) -> Step:
        with self._lock:
            self.requests.append(head)
            return self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            if self.tls is not None:
                if self.tls_silent:
                    self.stop.wait(30)
                    return
                conn = self.tls.wrap_socket(conn, server_side=True)
            buf = b""
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                if not self._next_step(head)(conn):
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self._accepter.join(5)
        self._sock.close()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            if t.ident is not None:  # started (close may run between counting and start)
                t.join(5)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
