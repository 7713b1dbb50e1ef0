"""Receives axb completion callbacks: checks X-Axb-Signature, refuses stale ones, dedupes."""

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["AXB_CALLBACK_SECRET"].encode()
seen: set[str] = set()  # X-Axb-Delivery ids already handled: keep them in your database


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        sig = dict(p.split("=", 1) for p in self.headers.get("X-Axb-Signature", "").split(",") if "=" in p)
        t = sig.get("t", "")
        mac = hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = t.isdigit() and abs(time.time() - int(t)) <= 300  # older than 5 minutes: refused
        ok = fresh and hmac.compare_digest(mac, sig.get("v1", ""))
        if ok and self.headers["X-Axb-Delivery"] not in seen:  # the same delivery may come again
            seen.add(self.headers["X-Axb-Delivery"])
            print(json.dumps(json.loads(body)), flush=True)  # handle the result here
        self.send_response(204 if ok else 400)
        self.end_headers()


HTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 8099), Hook).serve_forever()
