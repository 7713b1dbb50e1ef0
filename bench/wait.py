"""``python -m bench --only wait``: what Redis WAIT costs (worker/replication.py).

The stack's Redis gets a replica (``redis-server --replicaof``, same machine), and the same work
runs with ``AXB_REDIS_WAIT_REPLICAS=0`` and ``=1``, side by side:

- ``enqueue_bind`` one call at a time (one WAIT per call: the worst case for a producer);
- ``enqueue_binds`` of many rows (one WAIT per call, at its end);
- a drain at 0 ms vendor latency (one WAIT before each vendor call, one with each outcome: the
  worst case for a worker, where Redis round trips are all there is).
"""

from __future__ import annotations

import os
import shutil
import time

from bench.drains import Drain, drain_ours, enqueue_ours, point_producer
from bench.harness import OUT, Proc, Stack, bind_requests, free_port
from bench.report import Row


def _start_replica(stack: Stack) -> Proc:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not on the PATH")
    port = free_port()
    directory = OUT / "replica"
    directory.mkdir(parents=True, exist_ok=True)
    proc = stack.spawn(
        "replica",
        [
            exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(directory), "--replicaof", "127.0.0.1", str(stack.redis_port),
        ],
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        info = stack.r.info("replication")
        if any(
            k.startswith("slave") and v.get("state") == "online"
            for k, v in info.items()
            if isinstance(v, dict)
        ):
            return proc
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not come online in 30 s")
        time.sleep(0.1)


def _waits(stack: Stack) -> int:
    """WAIT commands the stack's Redis has run so far (INFO commandstats; flushes keep it)."""
    stats = stack.r.info("commandstats").get("cmdstat_wait", {})
    return int(stats.get("calls", 0))


def _producer_wait(replicas: int) -> None:
    """This process's producer, with WAIT for ``replicas`` (0: off)."""
    from worker.runtime import reset_runtime
    from worker.settings import reset_settings_cache

    os.environ["AXB_REDIS_WAIT_REPLICAS"] = str(replicas)
    reset_settings_cache()
    reset_runtime()


def _singles(stack: Stack, n: int, tag: str) -> float:
    from worker.producer import enqueue_bind

    stack.fresh()
    reqs = bind_requests(n, tag)
    t = time.perf_counter()
    for r in reqs:
        enqueue_bind(r)
    return n / (time.perf_counter() - t)


def _bulk(stack: Stack, n: int, tag: str) -> float:
    stack.fresh()
    _, elapsed = enqueue_ours(stack, bind_requests(n, tag))
    return n / elapsed


def wait_cost(stack: Stack, cfg: object) -> list[Row]:
    from bench.config import Config

    assert isinstance(cfg, Config)
    point_producer(stack)
    singles_n = 1000 if cfg.quick else 3000
    bulk_n = 10_000 if cfg.quick else 50_000
    replica = _start_replica(stack)
    rows: list[Row] = []
    try:
        rates: dict[str, dict[int, float]] = {"singles": {}, "bulk": {}}
        waits: dict[str, dict[int, int]] = {"singles": {}, "bulk": {}, "drain": {}}
        drains: dict[int, Drain] = {}
        for w in (0, 1):  # each figure next to its twin in time
            _producer_wait(w)
            stack.log(f"wait: enqueue_bind x{singles_n}, WAIT {w}")
            before = _waits(stack)
            rates["singles"][w] = _singles(stack, singles_n, f"ws{w}")
            waits["singles"][w] = _waits(stack) - before
            stack.log(f"wait: enqueue_binds of {bulk_n:,}, WAIT {w}")
            before = _waits(stack)
            rates["bulk"][w] = _bulk(stack, bulk_n, f"wb{w}")
            waits["bulk"][w] = _waits(stack) - before
        _producer_wait(0)
        for w in (0, 1):
            before = _waits(stack)
            drains[w] = drain_ours(
                stack,
                f"drain 0 ms, WAIT {w}",
                cfg.n,
                latency_ms=0,
                processes=cfg.processes,
                concurrency=cfg.concurrency,
                pool=cfg.pool,
                tag=f"wd{w}",
                env={"AXB_REDIS_WAIT_REPLICAS": str(w)},
            )
            waits["drain"][w] = _waits(stack) - before
    finally:
        stack.stop(replica)
        os.environ.pop("AXB_REDIS_WAIT_REPLICAS", None)
        _producer_wait(0)
        os.environ.pop("AXB_REDIS_WAIT_REPLICAS", None)
    for what, label, unit in (
        ("singles", f"`enqueue_bind` one call at a time, {singles_n:,} calls", "calls/s"),
        ("bulk", f"`enqueue_binds` of {bulk_n:,} rows", "rows/s"),
    ):
        off, on = rates[what][0], rates[what][1]
        n_off, n_on = waits[what][0], waits[what][1]
        rows.append(
            Row(
                f"WAIT off: {label}", f"{off:,.0f} {unit} ({n_off:,} WAITs)", "baseline", value=off, unit=unit
            )
        )
        rows.append(
            Row(
                f"WAIT 1 replica: {label}",
                f"{on:,.0f} {unit} ({n_on:,} WAITs)",
                f"{on / off:.2f}× WAIT off",
                value=on,
                unit=unit,
                ratio_value=round(on / off, 3),
            )
        )
    off_d, on_d = drains[0], drains[1]
    desc = f"drain of {cfg.n:,} binds at 0 ms, {cfg.processes}× `axb worker -c {cfg.concurrency}`"
    off_fig = f"{off_d.rate:,.0f} binds/s ({waits['drain'][0]:,} WAITs)"
    rows.append(
        Row(
            f"WAIT off: {desc}",
            off_fig,
            "baseline",
            value=off_d.rate,
            unit="binds/s",
            details=off_d.as_dict(),
        )
    )
    rows.append(
        Row(
            f"WAIT 1 replica: {desc}",
            f"{on_d.rate:,.0f} binds/s ({waits['drain'][1]:,} WAITs)",
            f"{on_d.rate / off_d.rate:.2f}× WAIT off",
            value=on_d.rate,
            unit="binds/s",
            ratio_value=round(on_d.rate / off_d.rate, 3),
            details=on_d.as_dict(),
        )
    )
    return rows
