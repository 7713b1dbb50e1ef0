"""CPU of the simulator per BindAxb request: ``python -m bench.simulator_cost``.

Starts one simulator per checkout given with ``--tree`` (default: this one), each in its own
process as ``python -m worker.cli simulator``, and sends them the same kind of load in turns
(so load drifts on a shared machine hit all of them alike): ``-n`` signed BindAxb requests,
pre-signed here, sent by ``--clients`` client processes over keep-alive ``http.client``
connections. The figure is the simulator process's own CPU (utime + stime from
``/proc/<pid>/stat``) per request; the clients' CPU is not counted.

    python -m bench.simulator_cost --tree /tmp/before --tree .          # before / after
    python -m bench.simulator_cost --signature v1 --method GET          # the naive SDK's requests
    python -m bench.simulator_cost --latency-ms 20 --clients 16         # with vendor latency
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.harness import expiration, phones

ACCESS_KEY_ID = "simcost-access-key-id"
ACCESS_KEY_SECRET = "simcost-access-key-secret"  # a fake: the simulators check signatures against it
_CLK_TCK = os.sysconf("SC_CLK_TCK")

# Filled before the client processes fork: (method, path?query, headers, body) per request.
_REQUESTS: list[tuple[str, str, dict[str, str], str]] = []


def cpu_s(pid: int) -> tuple[float, float]:
    """(utime, stime) of process ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


class Simulator:
    """One simulator process running the ``worker`` package of ``tree``."""

    def __init__(self, tree: str, pool_size: int) -> None:
        tree, *extra = tree.split(os.pathsep)  # DIR[:MORE:PATHS]: more entries for PYTHONPATH
        self.tree = os.pathsep.join([os.path.abspath(tree), *extra])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {
            **os.environ,
            "PYTHONPATH": self.tree,
            "AXB_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AXB_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "simulator",
                "--port",
                str(self.port),
                "--pool-size",
                str(pool_size),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=tree,
            stdout=subprocess.DEVNULL,
        )
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.endpoint, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.http.get("/_simulator/faults").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the simulator of {self.tree} did not start") from None
                time.sleep(0.1)
        self.per_request_us: list[float] = []
        self.user_us: list[float] = []

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(10)


def _send(args: tuple[int, int, int]) -> dict[str, int]:
    """Client process: send requests ``start..stop`` to ``port`` on one keep-alive connection."""
    port, start, stop = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    outcomes: dict[str, int] = {}
    for method, target, headers, body in _REQUESTS[start:stop]:
        conn.request(method, target, body=body or None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        key = f"{response.status} OK" if b'"Code":"OK"' in data else f"{response.status} {data[:80]!r}"
        outcomes[key] = outcomes.get(key, 0) + 1
    conn.close()
    return outcomes


def sign_all(n: int, signature: str, method: str) -> None:
    from worker.vendor import sign_request

    exp = expiration()
    _REQUESTS.clear()
    for i in range(n):
        a, b = phones(i)
        params = {
            "PoolKey": "FC100000001",
            "PhoneNoA": a,
            "PhoneNoB": b,
            "Expiration": exp,
            "OutId": f"sc-{i}",
        }
        signed = sign_request(
            "BindAxb",
            params,
            endpoint="http://127.0.0.1",
            access_key_id=ACCESS_KEY_ID,
            secret=ACCESS_KEY_SECRET,
            scheme=signature,  # type: ignore[arg-type]
            method=method,
        )
        parts = urlsplit(signed.url)
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        _REQUESTS.append((signed.method, target, dict(signed.headers), signed.body))


def drain(pool: Any, sim: Simulator, start: int, stop: int, clients: int) -> dict[str, int]:
    """Send requests ``start..stop`` to ``sim`` over ``clients`` connections; record its CPU."""
    step = -(-(stop - start) // clients)
    slices = [(sim.port, s, min(s + step, stop)) for s in range(start, stop, step)]
    before = cpu_s(sim.proc.pid)
    outcomes: dict[str, int] = {}
    for part in pool.map(_send, slices):
        for key, count in part.items():
            outcomes[key] = outcomes.get(key, 0) + count
    after = cpu_s(sim.proc.pid)
    sim.per_request_us.append((sum(after) - sum(before)) / (stop - start) * 1e6)
    sim.user_us.append((after[0] - before[0]) / (stop - start) * 1e6)
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.simulator_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("-n", type=int, default=6000, help="requests per simulator (over all rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="turns per simulator (the spread)")
    parser.add_argument("--clients", type=int, default=4, help="client processes, one connection each")
    parser.add_argument("--signature", default="v3", choices=("v1", "v3"))
    parser.add_argument("--method", default="POST", choices=("GET", "POST"))
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the simulator's latency fault")
    parser.add_argument("--pool-size", type=int, default=1000)
    parser.add_argument(
        "--tree",
        action="append",
        help="a checkout whose simulator to measure (repeat); DIR:MORE adds MORE to its PYTHONPATH",
    )
    args = parser.parse_args(argv)
    trees = args.tree or ["."]
    per_round = args.n // args.rounds
    warm = 200
    sign_all(warm + per_round * args.rounds, args.signature, args.method)
    sims = [Simulator(tree, args.pool_size) for tree in trees]
    try:
        for sim in sims:
            sim.http.post("/_simulator/faults", json={"clear": True, "latency_ms": args.latency_ms})
        with multiprocessing.get_context("fork").Pool(args.clients) as pool:
            for sim in sims:
                drain(pool, sim, 0, warm, args.clients)
                sim.per_request_us.clear()
                sim.user_us.clear()
            problems: dict[str, int] = {}
            for r in range(args.rounds):
                start = warm + r * per_round
                for sim in sims:
                    for key, count in drain(pool, sim, start, start + per_round, args.clients).items():
                        if not key.endswith(" OK"):
                            problems[key] = problems.get(key, 0) + count
    finally:
        for sim in sims:
            sim.close()
    print(
        f"simulator CPU per BindAxb request ({args.signature} {args.method}, {per_round} requests x "
        f"{args.rounds} rounds, {args.clients} keep-alive connections, latency {args.latency_ms:g} ms, "
        f"load {os.getloadavg()[0]:.1f})"
    )
    print("| simulator tree | CPU per request: median (min–max) µs | of which user µs (median) |")
    print("|---|---:|---:|")
    for sim in sims:
        f = sim.per_request_us
        spread = f"{statistics.median(f):.0f} ({min(f):.0f}–{max(f):.0f})"
        print(f"| {sim.tree} | {spread} | {statistics.median(sim.user_us):.0f} |")
    if problems:
        print(f"answers other than 200 OK: {problems}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
