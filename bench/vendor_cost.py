"""CPU per vendor call, by stage: ``python -m bench.vendor_cost``.

One thread runs the worker's vendor path for one BindAxb, N times, against a canned vendor that
answers at once (a raw-socket server in a child process, so its CPU is not counted; or, with
``--simulator``, the project's own simulator in a child process), and reports the CPU of this
thread (``time.thread_time``) per call for each stage:

- ``params``: the stored request checked again and turned into API parameters (the fast path);
- ``sign``: the signed request (v3 by default), and its JSON form (stored before the send);
- ``send``: the HTTP exchange, through each transport compared;
- ``parse``: the JSON answer read and validated into a :class:`BindAxbResponse`.

Transports compared side by side in one run, in turns (so load drifts hit all of them alike):

- ``httpx.Client``: a full client's ``request`` (what the worker did before issue 13);
- ``httpx.HTTPTransport``: httpx's own transport under the per-thread sender (before this change);
- ``wire``: the worker's default per-thread transport (:mod:`worker.vendor.wire`).

``--callgrind`` runs a few calls of each path under valgrind instead and prints its instruction
count per call, which does not depend on the machine's load. ``--tree DIR`` measures the
``worker`` package of another checkout (e.g. ``--tree /work/main`` for the code before a change;
its default sender is then what ``wire`` runs).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import socketserver
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

_CANNED_BODY = json.dumps(
    {
        "RequestId": "5C1E2B4A-0000-4D7A-9F00-1A2B3C4D5E6F",
        "Message": "OK",
        "Code": "OK",
        "SecretBindDTO": {"Extension": "", "SecretNo": "17100000000", "SubsId": "1000000000000001"},
    },
    separators=(",", ":"),
).encode()
_CANNED_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Date: Sun, 30 Nov 2025 13:00:00 GMT\r\n"
    b"Content-Type: application/json;charset=utf-8\r\n"
    b"Content-Length: " + str(len(_CANNED_BODY)).encode() + b"\r\n"
    b"Connection: keep-alive\r\n"
    b"Access-Control-Allow-Origin: *\r\n"
    b"x-acs-request-id: 5C1E2B4A-0000-4D7A-9F00-1A2B3C4D5E6F\r\n"
    b"x-acs-trace-id: 0a1b2c3d4e5f60718293a4b5c6d7e8f9\r\n"
    b"\r\n" + _CANNED_BODY
)


class _Canned(socketserver.StreamRequestHandler):
    """Answers every request with the same BindAxb answer (the requests carry no body)."""

    def handle(self) -> None:
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while line := self.rfile.readline():
            if line in (b"\r\n", b"\n"):  # the end of a request head
                self.wfile.write(_CANNED_ANSWER)


def _serve_canned(sock: socket.socket) -> None:
    server = socketserver.ThreadingTCPServer(sock.getsockname(), _Canned, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    server.serve_forever()


@contextmanager
def canned_vendor() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    proc = multiprocessing.get_context("fork").Process(target=_serve_canned, args=(sock,), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        proc.kill()
        proc.join()
        sock.close()


@contextmanager
def simulator_vendor() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "simulator", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _stored_request(i: int) -> dict[str, str]:
    from bench.harness import expiration, phones

    a, b = phones(i)
    return {
        "PoolKey": "FC100000001",
        "PhoneNoA": a,
        "PhoneNoB": b,
        "Expiration": expiration(),
        "OutId": f"vc-{i}",
    }


class Path:
    """One transport's vendor path, timed by stage."""

    def __init__(self, name: str, endpoint: str, signature: str) -> None:
        from worker.settings import Settings
        from worker.vendor import DyplsClient

        os.environ.setdefault("AXB_ACCESS_KEY_ID", "test-access-key-id")
        os.environ.setdefault("AXB_ACCESS_KEY_SECRET", "test-access-key-secret")
        settings = Settings(endpoint=endpoint, signature=signature)
        self.name = name
        if name == "httpx.Client":
            self.client = DyplsClient(settings)
            self._full = httpx.Client(timeout=httpx.Timeout(5.0))
            self.client._sender.send = self._full_send  # type: ignore[method-assign]
        elif name == "httpx.HTTPTransport":
            self.client = DyplsClient(settings, transport=httpx.HTTPTransport())
        else:
            self.client = DyplsClient(settings)
        self.stages: dict[str, float] = {"params": 0.0, "sign": 0.0, "send": 0.0, "parse": 0.0}
        self.calls = 0

    def _full_send(
        self, method: str, url: str, headers: dict[str, str], content: str | None
    ) -> httpx.Response:
        return self._full.request(method, url, headers=headers, content=content)

    def run(self, stored: list[dict[str, str]]) -> None:
        from worker.vendor import api_params, bind_params

        clock = time.thread_time
        client = self.client
        st = self.stages
        for request in stored:
            t0 = clock()
            fast = bind_params(request, check_future=False)
            assert fast is not None
            params = api_params(fast[0])
            t1 = clock()
            signed = client.sign("BindAxb", params)
            signed.to_json_dict()
            t2 = clock()
            response = client._sender.send(signed.method, signed.url, signed.headers, signed.body or None)
            t3 = clock()
            body = client._parse(response)
            from worker.vendor import BindAxbResponse

            BindAxbResponse.model_validate(body)
            t4 = clock()
            st["params"] += t1 - t0
            st["sign"] += t2 - t1
            st["send"] += t3 - t2
            st["parse"] += t4 - t3
        self.calls += len(stored)

    def per_call_us(self) -> dict[str, float]:
        out = {k: v / self.calls * 1e6 for k, v in self.stages.items()}
        out["total"] = sum(out.values())
        return out


PATHS = ("httpx.Client", "httpx.HTTPTransport", "wire")


def compare(endpoint: str, n: int, rounds: int, signature: str, names: tuple[str, ...]) -> dict[str, Any]:
    paths = [Path(name, endpoint, signature) for name in names]
    stored = [_stored_request(i) for i in range(200)]
    for p in paths:  # warm up: connections, caches, imports
        p.run(stored[:50])
        p.stages = dict.fromkeys(p.stages, 0.0)
        p.calls = 0
    totals: dict[str, list[float]] = {p.name: [] for p in paths}
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        for p in paths:
            before = dict(p.stages), p.calls
            batch = (stored * (per_round // len(stored) + 1))[:per_round]
            p.run(batch)
            spent = sum(p.stages.values()) - sum(before[0].values())
            totals[p.name].append(spent / (p.calls - before[1]) * 1e6)
    result = {}
    for p in paths:
        figures = p.per_call_us()
        figures["round_median"] = statistics.median(totals[p.name])
        figures["round_min"] = min(totals[p.name])
        figures["round_max"] = max(totals[p.name])
        result[p.name] = figures
        p.client.close()
    return result


def table(result: dict[str, Any]) -> str:
    cols = ("params", "sign", "send", "parse", "total")
    lines = [
        "| path | " + " | ".join(f"{c} µs" for c in cols) + " | total per round: median (min–max) µs |",
        "|---|" + "---:|" * (len(cols) + 1),
    ]
    for name, f in result.items():
        cells = " | ".join(f"{f[c]:.0f}" for c in cols)
        spread = f"{f['round_median']:.0f} ({f['round_min']:.0f}–{f['round_max']:.0f})"
        lines.append(f"| {name} | {cells} | {spread} |")
    return "\n".join(lines)


def _callgrind(endpoint: str, name: str, n: int, signature: str, tree: str) -> None:
    """Instructions per call of ``name``: a run of n calls minus a run of 0 (imports, warm-up)."""
    counts = []
    for calls in (0, n):
        out = f"/tmp/vendor_cost.callgrind.{os.getpid()}.{calls}"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.vendor_cost",
                "--inner",
                name,
                "-n",
                str(calls),
                "--endpoint",
                endpoint,
                "--signature",
                signature,
                *(["--tree", tree] if tree else []),
            ],
            check=True,
            capture_output=True,
        )
        with open(out) as f:
            total = next(int(line.split()[1]) for line in f if line.startswith("summary:"))
        os.unlink(out)
        counts.append(total)
    where = f" [{tree}]" if tree else ""
    print(
        f"{name}{where}: {(counts[1] - counts[0]) / n / 1e3:.0f} k instructions per call (callgrind, n={n})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vendor_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=6000, help="calls per transport")
    parser.add_argument("--rounds", type=int, default=6, help="turns per transport (the spread)")
    parser.add_argument("--signature", default="v3", choices=("v1", "v3"))
    parser.add_argument(
        "--simulator", action="store_true", help="the project's simulator, not a canned answer"
    )
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated of: {', '.join(PATHS)}")
    parser.add_argument(
        "--callgrind", action="store_true", help="instruction counts under valgrind (small n)"
    )
    parser.add_argument("--tree", default="", help="measure the worker package of this checkout")
    parser.add_argument("--inner", default="", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = tuple(p for p in args.paths.split(",") if p)
    if args.tree:
        sys.path.insert(0, os.path.abspath(args.tree))
    if args.inner:  # one run under callgrind
        path = Path(args.inner, args.endpoint, args.signature)
        stored = [_stored_request(i) for i in range(50)]
        path.run(stored)
        path.run((stored * (args.n // 50 + 1))[: args.n])
        path.client.close()
        return 0
    vendor = simulator_vendor() if args.simulator else canned_vendor()
    with vendor as endpoint:
        if args.callgrind:
            for name in names:
                _callgrind(endpoint, name, args.n, args.signature, args.tree)
            return 0
        result = compare(endpoint, args.n, args.rounds, args.signature, names)
    import worker

    print(f"worker package: {os.path.dirname(worker.__file__)}")
    print(
        f"CPU of one thread per BindAxb call ({args.n} calls per path, {args.signature}, "
        f"{'simulator' if args.simulator else 'canned answer'}, load {os.getloadavg()[0]:.1f})"
    )
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
