"""A local Sentry endpoint that captures envelopes, so tests can read what would be sent."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BARRIER_MESSAGE = "axb-test-barrier"


class SentryCapture:
    """``events``: the events received, in order (not counting :meth:`send_barrier` markers)."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.events: list[dict[str, Any]] = []
        self.barriers = threading.Event()
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                capture.raw.append(body)
                for line in body.split(b"\n"):
                    try:
                        item = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(item, dict) and (
                        "event_id" in item
                        and ("message" in item or "exception" in item or "logentry" in item)
                    ):
                        if BARRIER_MESSAGE in json.dumps(item.get("message") or item.get("logentry")):
                            capture.barriers.set()
                        else:
                            capture.events.append(item)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.server.server_address[1]}/1"

    def send_barrier(self, timeout_s: float = 10) -> None:
        """Capture a marker message through the current Sentry client and wait until it arrives.
        The SDK's transport sends events one by one in order, so every event captured before the
        call has arrived in ``events`` when this returns: the way to prove that no more came."""
        import sentry_sdk

        self.barriers.clear()
        sentry_sdk.capture_message(BARRIER_MESSAGE)
        sentry_sdk.flush(timeout_s)
        assert self.barriers.wait(timeout_s), "the barrier event did not arrive"

    def all_text(self) -> str:
        return b"\n".join(self.raw).decode("utf-8", "replace")

    def close(self) -> None:
        self.server.shutdown()
