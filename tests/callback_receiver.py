"""A local HTTP receiver for completion callbacks (tests only): records every POST, can fail
the first N, answer a fixed status, or hold requests until released."""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int = 200

    @property
    def doc(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """``fail_first`` POSTs answer ``fail_status``; then ``status``. While ``hold`` is clear,
    requests wait for it (up to ``hold_max_s``)."""

    fail_first: int = 0
    fail_status: int = 503
    # After the first ``fail_first``, this share of POSTs (at random, seeded) also fails.
    fail_rate: float = 0.0
    seed: int = 14
    status: int = 200
    received: list[Received] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    hold_max_s: float = 10.0
    in_flight: int = 0
    max_in_flight: int = 0
    # Serve https with this context (the URL then names ``localhost``, as the certificate does).
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self.hold.set()
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                receiver.hold.wait(receiver.hold_max_s)
                with receiver._lock:
                    receiver.in_flight -= 1
                    n = len(receiver.received)
                    failing = n < receiver.fail_first or receiver._rng.random() < receiver.fail_rate
                    code = receiver.fail_status if failing else receiver.status
                    receiver.received.append(
                        Received(self.path, dict(self.headers.items()), body, time.time(), code)
                    )
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}/hooks/axb"
        return f"http://127.0.0.1:{self.port}/hooks/axb"

    def for_key(self, key: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.headers.get("X-Axb-Key") == key]

    def close(self) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()
