"""Plumbing for ``python -m bench``: one private Redis, one simulator, worker processes, /proc readings.

Every process is started in its own session (process group) and registered, so that
:meth:`Stack.close` can stop the whole group (Celery's pool children included) on success,
error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "_out"  # scratch (git-ignored): logs, CSV, profiles
ACCESS_KEY_ID = "bench-access-key-id"
ACCESS_KEY_SECRET = "bench-access-key-secret"  # a fake: the simulator checks signatures against it
POOL_KEY = "FC100000001"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expiration(hours: float = 10) -> str:
    """An ``Expiration`` (UTC+8, ``yyyy-MM-dd HH:mm:ss``) ``hours`` ahead."""
    return (datetime.now(UTC) + timedelta(hours=8 + hours)).strftime("%Y-%m-%d %H:%M:%S")


def phones(i: int) -> tuple[str, str]:
    """A distinct, valid (A, B) mobile pair for every ``i`` below 7e8; no A equals any B."""
    return (
        f"13{3 + (i // 100_000_000) % 7}{i % 100_000_000:08d}",
        f"15{(i // 100_000_000) % 7}{i % 100_000_000:08d}",
    )


def bind_requests(n: int, tag: str, start: int = 0) -> list[dict[str, str]]:
    exp = expiration()
    out = []
    for i in range(start, start + n):
        a, b = phones(i)
        out.append(
            {"PoolKey": POOL_KEY, "PhoneNoA": a, "PhoneNoB": b, "Expiration": exp, "OutId": f"{tag}-{i}"}
        )
    return out


# --- /proc -------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of one process, MB."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB / 1024
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes (each, not their reaped children)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


def wait_idle(
    pids: Callable[[], list[int]], alive: Callable[[], bool], window_s: float = 0.5, timeout_s: float = 120
) -> float:
    """Until the processes idle (two windows in a row under 10 % of one core's CPU per process:
    every process has started and waits on an empty queue; one still starting uses most of a
    core); their CPU per second while idle. (An idle ``axb worker`` process polls its delay
    queue and watchdog: about 6 % of a core here, so a bound for all processes together would
    not hold for two or more.)"""
    deadline = time.monotonic() + timeout_s
    procs = pids()
    quiet, last, used = 0, cpu_s(procs), 0.0
    time.sleep(1.0)
    while quiet < 2:
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(
                f"the workers did not start (or never went idle: {used / window_s:.2f} of a core "
                f"in the last {window_s:g} s, over {len(procs)} processes)"
            )
        time.sleep(window_s)
        procs = pids()
        now = cpu_s(procs)
        bound = 0.1 * window_s * max(1, len(procs))
        quiet, last, used = (quiet + 1 if now - last < bound else 0), now, now - last
    return used / window_s


# --- processes -----------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        return tree(self.pid)


@dataclass
class Stack:
    """The benchmark's world: Redis, the simulator, and whatever workers a scenario starts."""

    quiet: bool = False
    redis_port: int = 0
    sim_port: int = 0
    procs: list[Proc] = field(default_factory=list)
    r: Any = None
    http: Any = None

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, pool_size: int) -> Stack:
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        for old in (OUT / "logs").glob("*.log"):  # each run's logs only
            old.unlink()
        self.redis_port, self.sim_port = free_port(), free_port()
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise SystemExit("redis-server is not on the PATH (apt-get install redis-server)")
        self.spawn(
            "redis",
            [
                redis_server,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(OUT),
                "--maxclients",
                "2000",
            ],
        )
        self.spawn(
            "simulator",
            [
                sys.executable,
                "-m",
                "worker.cli",
                "simulator",
                "--port",
                str(self.sim_port),
                "--pool-size",
                str(pool_size),
            ],
            env=self.env(),
        )
        self.r = redis.Redis(port=self.redis_port, decode_responses=True)
        self.http = httpx.Client(base_url=self.endpoint, timeout=120)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.r.ping()
                self.http.get("/_simulator/faults").raise_for_status()
                break
            except (redis.RedisError, httpx.HTTPError):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server or the simulator did not start") from None
                time.sleep(0.1)
        return self

    def close(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc, timeout_s=5)
        if self.http is not None:
            self.http.close()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = OUT / "logs" / f"{name}.log"
        with log.open("ab") as fh:
            fh.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env or dict(os.environ),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc, timeout_s: float = 20) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it."""
        if proc in self.procs:
            self.procs.remove(proc)
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(5)

    @contextlib.contextmanager
    def running(self, procs: Sequence[Proc]) -> Iterator[Sequence[Proc]]:
        try:
            yield procs
        finally:
            for p in procs:
                self.stop(p)

    # --- configuration --------------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AXB_REDIS_URL=self.redis_url,
            AXB_ENDPOINT=self.endpoint,
            AXB_ACCESS_KEY_ID=ACCESS_KEY_ID,
            AXB_ACCESS_KEY_SECRET=ACCESS_KEY_SECRET,
            BENCH_REDIS_URL=self.redis_url,
            BENCH_DYPLS_DOMAIN=f"127.0.0.1:{self.sim_port}",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def fresh(self, latency_ms: float = 0.0, qps_limit: int | None = None) -> None:
        """Empty Redis, a simulator with no bindings and this latency / QPS limit."""
        self.r.flushall()
        self.http.post("/_simulator/reset").raise_for_status()
        self.http.post(
            "/_simulator/faults", json={"clear": True, "latency_ms": latency_ms, "qps_limit": qps_limit}
        ).raise_for_status()

    def ledger(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/_simulator/ledger").json()
        return data

    # --- observation ----------------------------------------------------------------------------

    def start_held(self, queue: str, start: Callable[[], list[Proc]]) -> list[Proc]:
        """``start()`` the workers of a drain while its backlog on ``queue`` waits aside, and give
        it back once every process has started and idles (:func:`wait_idle`): otherwise one
        process's start-up (about a second of CPU each) is counted while another already drains."""
        held = f"{queue}.held"
        self.r.rename(queue, held)
        procs: list[Proc] = []
        try:
            procs = start()
            wait_idle(
                lambda: [pid for p in procs for pid in p.pids()],
                lambda: all(p.popen.poll() is None for p in procs),
            )
        except BaseException:
            for p in procs:  # never left running into the next scenario
                self.stop(p)
            raise
        finally:
            self.r.rename(held, queue)
        return procs

    def wait_first_take(self, queue: str, n: int, timeout_s: float = 90) -> float:
        """Wall time at which a worker first took a message off ``queue`` (which held ``n``)."""
        deadline = time.monotonic() + timeout_s
        while self.r.llen(queue) >= n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no worker took a message from {queue} in {timeout_s:.0f} s")
            time.sleep(0.002)
        return time.time()

    def log(self, text: str) -> None:
        if not self.quiet:
            print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def busiest_window(times: list[float], width: float = 1.0) -> tuple[int, float]:
    """The most calls in any window ``[t, t + width)`` of the sorted ``times``, and where it starts
    (seconds after the first call)."""
    best, start, j = 0, 0.0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= width:
            j += 1
        if i - j + 1 > best:
            best, start = i - j + 1, times[j] - times[0]
    return best, start
