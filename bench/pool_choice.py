"""Which Celery pool and concurrency drain a bind backlog fastest (the work is I/O bound)?

Runs, one after another on the same machine and simulator (20 ms vendor latency), a backlog of
N binds through one ``axb worker`` per configuration and prints binds/s and worker RSS.

    .venv/bin/python -m bench.pool_choice [N]
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis

CONFIGS = [("threads", 8), ("threads", 32), ("threads", 64), ("prefork", 8), ("prefork", 16)]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    total = 0
    try:
        out = subprocess.run(
            ["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        total = sum(int(x) for x in out.split())
    except (OSError, ValueError):
        pass
    return total / 1024


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    work = Path(tempfile.mkdtemp(prefix="axb-bench-"))
    rport, sport = _port(), _port()
    procs = [
        subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(rport),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work),
            ],
            stdout=subprocess.DEVNULL,
        )
    ]
    env = dict(
        os.environ,
        AXB_REDIS_URL=f"redis://127.0.0.1:{rport}/0",
        AXB_ENDPOINT=f"http://127.0.0.1:{sport}",
        AXB_RATE_LIMIT_QPS="100000",
        AXB_RATE_LIMIT_BURST="1000",
    )
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "simulator",
                "--port",
                str(sport),
                "--latency-ms",
                "20",
                "--pool-size",
                "20000",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    time.sleep(1.5)
    os.environ.update(env)
    from worker.producer import enqueue_binds

    r = redis.Redis(port=rport)
    print(f"{'pool':<8} {'conc':>4} {'binds/s':>9} {'rss MB':>8}")
    try:
        for pool, conc in CONFIGS:
            r.flushall()
            httpx.post(f"http://127.0.0.1:{sport}/_simulator/reset", timeout=5)
            exp = (datetime.now(UTC) + timedelta(hours=10)).strftime("%Y-%m-%d %H:%M:%S")
            tag = uuid.uuid4().hex[:6]
            reqs = [
                {
                    "PoolKey": "FC100000001",
                    "PhoneNoA": f"138{i:08d}",
                    "PhoneNoB": f"139{i:08d}",
                    "Expiration": exp,
                    "OutId": f"{tag}-{i}",
                }
                for i in range(n)
            ]
            enqueue_binds(reqs)
            w = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worker.cli",
                    "worker",
                    "--pool",
                    pool,
                    "-c",
                    str(conc),
                    "-l",
                    "ERROR",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            queue = env.get("AXB_QUEUE", "axb.bind")
            while r.llen(queue) == n:
                time.sleep(0.01)
            t0 = time.monotonic()
            rss = 0.0
            keys = [f"axb:bind:{tag}-{i}" for i in range(n)]
            while True:
                pipe = r.pipeline(transaction=False)
                for k in keys:
                    pipe.hget(k, "status")
                done = sum(1 for s in pipe.execute() if s in (b"succeeded", b"dead_lettered"))
                rss = max(rss, _rss_mb(w.pid))
                if done >= n:
                    break
                time.sleep(0.5)
            rate = n / (time.monotonic() - t0)
            w.terminate()
            w.wait(30)
            print(f"{pool:<8} {conc:>4} {rate:>9.0f} {rss:>8.0f}", flush=True)
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
