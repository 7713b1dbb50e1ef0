"""Drain a backlog through one kind of worker and time it: ours, the naive SDK task, a no-op.

Every drain works the same way: the backlog is enqueued *before* any worker runs, and waits
aside (renamed) until every worker process has started and idles (``Stack.start_held``), so no
process's start-up CPU is counted; the clock starts when a worker first takes a message off
the queue and
stops at the last result, read from where each kind of worker stores it (ours: the record's
``succeeded_at``/``dead_lettered_at``; the naive task: Celery's ``date_done``; the no-op has no
result, so the stop is when Redis holds no message for it, ready or unacknowledged, watched
every 5 ms). CPU seconds of the worker processes, the simulator and Redis are read from
``/proc`` at both ends of the same interval.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.harness import Proc, Stack, bind_requests, cpu_s, rss_mb

OURS_QUEUE = "bench.axb"
NAIVE_QUEUE = "naive.bind"
NOOP_QUEUE = "noop"


@dataclass
class Drain:
    """One timed drain of ``n`` messages."""

    label: str
    n: int
    seconds: float
    ok: int
    failed: int = 0
    worker_cpu_s: float = 0.0
    sim_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    rss_mb: list[float] = field(default_factory=list)  # per worker process (parent first)
    vendor_calls: int | None = None
    vendor_bindings: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "n": self.n,
            "seconds": round(self.seconds, 3),
            "rate_per_s": round(self.rate, 1),
            "ok": self.ok,
            "failed": self.failed,
            "worker_cpu_ms_per_msg": round(self.worker_cpu_s * 1000 / self.n, 3),
            "simulator_cpu_ms_per_msg": round(self.sim_cpu_s * 1000 / self.n, 3),
            "redis_cpu_ms_per_msg": round(self.redis_cpu_s * 1000 / self.n, 3),
            "worker_rss_mb": [round(x, 1) for x in self.rss_mb],
            "vendor_calls": self.vendor_calls,
            "vendor_bindings": self.vendor_bindings,
            **self.extra,
        }


class _Clock:
    """CPU of the worker tree, the simulator and Redis between ``start()`` and ``stop()``."""

    def __init__(self, stack: Stack, workers: list[Proc]) -> None:
        self.stack, self.workers = stack, workers

    def _read(self) -> tuple[float, float, float]:
        w = cpu_s([pid for p in self.workers for pid in p.pids()])
        by_name = {p.name: p for p in self.stack.procs}
        return w, cpu_s(by_name["simulator"].pids()), cpu_s(by_name["redis"].pids())

    def start(self) -> None:
        self.t0 = self._read()

    def stop(self) -> tuple[float, float, float]:
        t1 = self._read()
        return t1[0] - self.t0[0], t1[1] - self.t0[1], t1[2] - self.t0[2]


def _rss(workers: list[Proc]) -> list[float]:
    return [rss_mb(pid) for p in workers for pid in p.pids()]


# --- ours ------------------------------------------------------------------------------------------


_pointed: list[str] = []


def point_producer(stack: Stack, queue: str = OURS_QUEUE) -> None:
    """Point this process's ``worker.producer`` at the stack's Redis and ``queue`` (once: re-pointing
    resets kombu's global pools, which the naive app's ``.delay()`` shares)."""
    if _pointed == [stack.redis_url, queue]:
        return
    _pointed[:] = [stack.redis_url, queue]
    os.environ.update(stack.env(AXB_QUEUE=queue))
    from worker.celery_app import configure
    from worker.runtime import reset_runtime
    from worker.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    reset_runtime()
    configure(get_settings())


def enqueue_ours(
    stack: Stack, reqs: list[dict[str, str]], queue: str = OURS_QUEUE
) -> tuple[list[str], float]:
    """Enqueue through ``worker.producer.enqueue_binds``; returns the keys and the seconds it took."""
    point_producer(stack, queue)
    from worker.producer import enqueue_binds

    t = time.perf_counter()
    result = enqueue_binds(reqs)
    elapsed = time.perf_counter() - t
    if result.rejected:
        raise RuntimeError(f"{len(result.rejected)} benchmark requests rejected: {result.rejected[:3]}")
    return [h.key for h in result.handles], elapsed


def start_ours(
    stack: Stack,
    name: str,
    *,
    processes: int = 1,
    concurrency: int = 32,
    pool: str = "threads",
    queue: str = OURS_QUEUE,
    rate_qps: float | None = 1_000_000,
    burst: int | None = 1000,
    env: dict[str, str] | None = None,
    argv: list[str] | None = None,
) -> list[Proc]:
    """``processes`` × ``axb worker``; ``rate_qps`` / ``burst`` None keep the project's defaults.

    ``argv``: one ``axb worker`` started with exactly these options instead (``[]``: the default
    command as a user types it, which itself starts one process per core)."""
    limits = {}
    if rate_qps is not None:
        limits["AXB_RATE_LIMIT_QPS"] = f"{rate_qps:g}"
    if burst is not None:
        limits["AXB_RATE_LIMIT_BURST"] = str(burst)
    worker_env = stack.env(AXB_QUEUE=queue, **limits, **(env or {}))
    if argv is not None:
        return [
            stack.spawn(f"{name}-0", [sys.executable, "-m", "worker.cli", "worker", *argv], env=worker_env)
        ]
    return [
        stack.spawn(
            f"{name}-{i}",
            [
                sys.executable,
                "-m",
                "worker.cli",
                "worker",
                "--pool",
                pool,
                "-c",
                str(concurrency),
                "-n",
                f"{name}-{i}@%h",
            ],
            env=worker_env,
        )
        for i in range(processes)
    ]


def record_key(key: str) -> str:
    from worker import keys

    return keys.bind_record(key)


def terminal_times(stack: Stack, keys: list[str]) -> tuple[int, int, list[int]]:
    """(succeeded, dead-lettered, finish times in ms) of ``keys``."""
    ok = dead = 0
    times: list[int] = []
    for i in range(0, len(keys), 2000):
        pipe = stack.r.pipeline(transaction=False)
        for k in keys[i : i + 2000]:
            pipe.hmget(record_key(k), "status", "succeeded_at", "dead_lettered_at")
        for status, s_at, d_at in pipe.execute():
            if status == "succeeded":
                ok += 1
                times.append(int(s_at))
            elif status == "dead_lettered":
                dead += 1
                times.append(int(d_at))
    return ok, dead, times


class Stalled(RuntimeError):
    """Nothing finished for too long (a broken worker, say): the scenario is abandoned."""


def check_progress(
    done: int, total: int, state: dict[str, float], stall_s: float, what: str, workers: list[Proc]
) -> None:
    """Raise :class:`Stalled` when ``done`` has not moved for ``stall_s`` or a worker died."""
    now = time.monotonic()
    if done != state.get("done"):
        state.update(done=done, at=now)
    dead = [p.name for p in workers if p.popen.poll() is not None]
    if dead:
        raise Stalled(f"{what}: worker {', '.join(dead)} exited (see bench/_out/logs/); {done}/{total} done")
    if now - state["at"] > stall_s:
        raise Stalled(f"{what}: no progress for {stall_s:.0f} s at {done}/{total} (see bench/_out/logs/)")


def messages_left(r: Any, queue: str) -> int:
    """Messages in ``queue`` plus those taken and not yet acknowledged (kombu's ``unacked`` hash;
    a late-acked message is acknowledged when its task returns), read through client ``r``."""
    pipe = r.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.hlen("unacked")
    ready, unacked = pipe.execute()
    return int(ready) + int(unacked)


def wait_terminal(
    stack: Stack,
    keys: list[str],
    workers: list[Proc],
    stall_s: float = 60,
    poll_s: float = 0.5,
    *,
    queue: str | None = None,
) -> None:
    """Until every key is ``succeeded`` or ``dead_lettered``.

    ``queue``: the broker queue the keys' messages wait in. While it holds any, or any is taken
    and not acknowledged, only those counts are polled (the progress, in messages), and every
    key's status only then. Polling each remaining key twice a second cost the measured machine
    about three HGETs per bind (in the bench process and in Redis) during a throughput drain,
    which the no-op's drain, polling the same two counts, did not carry."""
    remaining = list(keys)
    state: dict[str, float] = {}
    if queue is not None:
        while (waiting := messages_left(stack.r, queue)) > 0:
            check_progress(-waiting, len(keys), state, stall_s, "messages", workers)
            time.sleep(poll_s)
        state.clear()
    while remaining:
        still: list[str] = []
        for i in range(0, len(remaining), 2000):
            part = remaining[i : i + 2000]
            pipe = stack.r.pipeline(transaction=False)
            for k in part:
                pipe.hget(record_key(k), "status")
            still.extend(
                k
                for k, s in zip(part, pipe.execute(), strict=True)
                if s not in ("succeeded", "dead_lettered")
            )
        remaining = still
        if remaining:
            check_progress(len(keys) - len(remaining), len(keys), state, stall_s, "binds", workers)
            time.sleep(poll_s)


def drain_ours(
    stack: Stack,
    label: str,
    n: int,
    *,
    latency_ms: float,
    processes: int = 1,
    concurrency: int = 32,
    pool: str = "threads",
    tag: str = "t",
    ledger: bool = True,
    stall_s: float = 60,
    qps_limit: int | None = None,
    **worker_kw: Any,
) -> Drain:
    stack.fresh(latency_ms=latency_ms, qps_limit=qps_limit)
    keys, enqueue_s = enqueue_ours(stack, bind_requests(n, tag))
    messages = stack.r.llen(OURS_QUEUE)  # bulk enqueues carry AXB_BATCH_SIZE keys per message
    stack.log(f"{label}: {n} binds enqueued in {enqueue_s:.1f} s ({messages} messages); draining")
    workers = stack.start_held(
        OURS_QUEUE,
        lambda: start_ours(stack, tag, processes=processes, concurrency=concurrency, pool=pool, **worker_kw),
    )
    with stack.running(workers):
        clock = _Clock(stack, workers)
        t0 = stack.wait_first_take(OURS_QUEUE, messages)
        clock.start()
        wait_terminal(stack, keys, workers, stall_s, queue=OURS_QUEUE)
        w_cpu, s_cpu, r_cpu = clock.stop()
        rss = _rss(workers)
    ok, dead, times = terminal_times(stack, keys)
    drain = Drain(label, n, max(times) / 1000 - t0, ok, dead, w_cpu, s_cpu, r_cpu, rss)
    drain.extra["enqueue_rows_per_s"] = round(n / enqueue_s, 1)
    if ledger:
        led = stack.ledger()
        drain.vendor_calls = sum(1 for c in led["calls"] if c["action"] == "BindAxb")
        drain.vendor_bindings = int(led["total_bindings"])
    stack.log(f"{label}: {drain.rate:.0f}/s ({ok} ok, {dead} dead-lettered)")
    return drain


# --- the naive SDK task -------------------------------------------------------------------------------


def naive_app() -> Any:
    """``bench.naive_app``, imported once the stack's environment is in ``os.environ``."""
    from bench import naive_app as module

    return module


def enqueue_naive(reqs: list[dict[str, str]]) -> list[str]:
    task = naive_app().bind_axb
    return [
        task.delay(r["PoolKey"], r["PhoneNoA"], r["PhoneNoB"], r["Expiration"], r["OutId"]).id for r in reqs
    ]


def celery_worker_argv(app: str, pool: str, concurrency: int, name: str) -> list[str]:
    """A plain ``celery worker`` of a baseline app (the naive task, the no-op)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "-n",
        f"{name}@%h",
    ]


def start_naive(stack: Stack, name: str, *, pool: str = "prefork", concurrency: int = 8) -> list[Proc]:
    return [
        stack.spawn(
            name,
            celery_worker_argv("bench.naive_app", pool, concurrency, name),
            env=stack.env(BENCH_NAIVE_QUEUE=NAIVE_QUEUE),
        )
    ]


def drain_naive(
    stack: Stack,
    label: str,
    n: int,
    *,
    latency_ms: float,
    pool: str = "prefork",
    concurrency: int = 8,
    tag: str = "naive",
    stall_s: float = 60,
) -> Drain:
    stack.fresh(latency_ms=latency_ms)
    ids = enqueue_naive(bind_requests(n, tag))
    stack.log(f"{label}: {n} tasks enqueued; draining")
    workers = stack.start_held(
        NAIVE_QUEUE, lambda: start_naive(stack, tag, pool=pool, concurrency=concurrency)
    )
    with stack.running(workers):
        clock = _Clock(stack, workers)
        t0 = stack.wait_first_take(NAIVE_QUEUE, n)
        clock.start()
        remaining = [f"celery-task-meta-{i}" for i in ids]
        metas: dict[str, dict[str, Any]] = {}
        state: dict[str, float] = {}
        while (waiting := stack.r.llen(NAIVE_QUEUE)) > 0:  # as wait_terminal(queue=...) does for ours
            # (the naive task acks early: its unacked hash empties as the tasks start, not end)
            check_progress(-waiting, n, state, stall_s, "naive messages", workers)
            time.sleep(0.5)
        state.clear()
        while remaining:
            still: list[str] = []
            for i in range(0, len(remaining), 2000):
                part = remaining[i : i + 2000]
                for key, raw in zip(part, stack.r.mget(part), strict=True):
                    meta = json.loads(raw) if raw else None
                    if meta and meta.get("status") in ("SUCCESS", "FAILURE"):
                        metas[key] = meta
                    else:
                        still.append(key)
            remaining = still
            if remaining:
                check_progress(n - len(remaining), n, state, stall_s, "naive tasks", workers)
                time.sleep(0.5)
        w_cpu, s_cpu, r_cpu = clock.stop()
        rss = _rss(workers)
    ok = sum(1 for m in metas.values() if m["status"] == "SUCCESS" and m["result"].get("Code") == "OK")
    end = max(datetime.fromisoformat(m["date_done"]).timestamp() for m in metas.values())
    drain = Drain(label, n, end - t0, ok, n - ok, w_cpu, s_cpu, r_cpu, rss)
    led = stack.ledger()
    drain.vendor_calls = sum(1 for c in led["calls"] if c["action"] == "BindAxb")
    drain.vendor_bindings = int(led["total_bindings"])
    stack.log(f"{label}: {drain.rate:.0f}/s ({ok} ok)")
    return drain


# --- the no-op --------------------------------------------------------------------------------------


def drain_noop(
    stack: Stack,
    label: str,
    n: int,
    *,
    pool: str = "solo",
    concurrency: int = 1,
    processes: int = 1,
    stall_s: float = 60,
) -> Drain:
    stack.fresh()
    from bench import noop_app

    with noop_app.app.producer_or_acquire() as producer:
        for i in range(n):
            noop_app.noop.apply_async(args=[f"noop-{i}"], producer=producer)
    stack.log(f"{label}: {n} tasks enqueued; draining")
    workers = stack.start_held(
        NOOP_QUEUE,
        lambda: [
            stack.spawn(
                f"noop-{pool}-{i}",
                celery_worker_argv("bench.noop_app", pool, concurrency, f"noop-{pool}-{i}"),
                env=stack.env(BENCH_NOOP_QUEUE=NOOP_QUEUE),
            )
            for i in range(processes)
        ],
    )
    with stack.running(workers):
        clock = _Clock(stack, workers)
        t0 = stack.wait_first_take(NOOP_QUEUE, n)
        clock.start()
        state: dict[str, float] = {}
        while (left := messages_left(stack.r, NOOP_QUEUE)) > 0:
            check_progress(n - left, n, state, stall_s, "no-op tasks", workers)
            time.sleep(0.005)
        end = time.time()
        w_cpu, s_cpu, r_cpu = clock.stop()
        rss = _rss(workers)
    drain = Drain(label, n, end - t0, n, 0, w_cpu, s_cpu, r_cpu, rss)
    stack.log(f"{label}: {drain.rate:.0f}/s")
    return drain
