"""The sections of ``python -m bench``; each returns rows of the one table (and notes)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable

from bench.config import Config
from bench.drains import (
    OURS_QUEUE,
    Drain,
    enqueue_ours,
    point_producer,
    start_ours,
    terminal_times,
    wait_terminal,
)
from bench.harness import OUT, Stack, bind_requests, busiest_window, expiration, phones, rss_mb
from bench.http_door import http_door
from bench.report import Row
from bench.scaling import scaling
from bench.throughput import throughput
from bench.wait import wait_cost
from worker.backfill import safe_writer


def _per_s(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _best(runs: list[Drain]) -> Drain:
    return max(runs, key=lambda d: d.rate)


def _guard(rows: list[Row], scenario: str, target: str, fn: Callable[[], list[Row]], stack: Stack) -> None:
    """Run a section; an exception becomes an error row (the other sections still run)."""
    try:
        rows.extend(fn())
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        stack.log(f"{scenario}: {type(exc).__name__}: {exc}")
        rows.append(Row(scenario, "", target=target, error=f"{type(exc).__name__}: {exc}"[:300]))


# --- rate-limit fidelity -------------------------------------------------------------------------------


def rate_fidelity(stack: Stack, cfg: Config) -> list[Row]:
    from worker.settings import Settings

    rate, backlog = cfg.rate_qps, cfg.rate_backlog
    burst = int(Settings.model_fields["rate_limit_burst"].default)
    sim_limit = rate + burst + max(2, rate // 20)
    stack.fresh(latency_ms=cfg.vendor_latency_ms, qps_limit=sim_limit)
    keys, _ = enqueue_ours(stack, bind_requests(backlog, "rl"))
    stack.log(f"rate limit: {backlog} binds enqueued; 2 workers at AXB_RATE_LIMIT_QPS={rate}")
    workers = start_ours(stack, "rl", processes=2, concurrency=cfg.concurrency, rate_qps=rate, burst=None)
    with stack.running(workers):
        wait_terminal(stack, keys, workers, stall_s=60)
    ok, dead, _ = terminal_times(stack, keys)
    ledger = stack.ledger()
    calls = [c for c in ledger["calls"] if c["action"] == "BindAxb"]
    flow = sum(
        1 for c in calls if str(c["code"]) == "isv.FLOW_LIMIT" or str(c["code"]).startswith("Throttling")
    )
    admitted = sorted(float(c["time"]) for c in calls if c["fault"] != "throttled")
    span = admitted[-1] - admitted[0]
    achieved = len(admitted) / span if span > 0 else 0.0
    per_second: dict[str, int] = {}
    for src in ("calls_per_second", "throttled_per_second"):
        for sec, count in ledger[src].items():
            per_second[sec] = per_second.get(sec, 0) + int(count)
    calendar = max(per_second.values(), default=0)
    # Sliding windows: on arrival at the simulator, and on the workers' own send times (each
    # attempt's sent_at in the key's history).
    arrival, arrival_at = busiest_window(admitted)
    from worker import keys as axb_keys

    pipe = stack.r.pipeline(transaction=False)
    for key in keys:
        pipe.lrange(axb_keys.bind_history(key), 0, -1)
    sent_by_request: dict[str, float] = {}
    for hist in pipe.execute():
        for entry in (json.loads(x) for x in hist):
            if entry.get("sent_at"):
                sent_by_request[str(entry.get("request_id") or len(sent_by_request))] = (
                    int(entry["sent_at"]) / 1000
                )
    sends = sorted(sent_by_request.values())
    send, send_at = busiest_window(sends)
    # How long a request took from our send to the simulator's receipt (first 100 calls, all).
    transit = sorted(
        (float(c["time"]) - sent_by_request[c["request_id"]], float(c["time"]))
        for c in calls
        if c.get("request_id") in sent_by_request
    )
    first = sorted(d for d, _ in sorted(transit, key=lambda x: x[1])[:100])
    every = sorted(d for d, _ in transit)

    def _ms(xs: list[float], q: float) -> float:
        return round(1000 * xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else 0.0

    # Arrivals per 100 ms over the first three seconds: how the cold start ramps up.
    ramp = [0] * 30
    for t in admitted:
        slot = int((t - admitted[0]) * 10)
        if slot < 30:
            ramp[slot] += 1
    limit = rate + burst
    stack.log(
        f"rate limit: {achieved:.1f}/s, busiest second {calendar}, sliding {arrival}, FLOW_LIMIT {flow}"
    )
    desc = f"rate limit R={rate}/s"
    cfg.notes.append(
        f"Rate limit: 2× `axb worker --pool threads -c {cfg.concurrency}` with AXB_RATE_LIMIT_QPS={rate} "
        f"(burst {burst}, the default), a {backlog:,}-bind backlog, simulator at "
        f"{cfg.vendor_latency_ms:g} ms with --qps-limit {sim_limit}; sliding windows use the simulator's "
        "arrival times and, in brackets, the workers' send times (each attempt's sent_at in the key's "
        "history)."
    )
    details = {
        "rate_qps": rate,
        "burst": burst,
        "simulator_qps_limit": sim_limit,
        "backlog": backlog,
        "succeeded": ok,
        "dead_lettered": dead,
        "vendor_calls": len(calls),
        "admitted_calls": len(admitted),
        "span_s": round(span, 3),
        "max_calendar_second": calendar,
        "max_sliding_1s_arrival": arrival,
        "max_sliding_1s_arrival_starts_s": round(arrival_at, 3),
        "max_sliding_1s_send": send,
        "max_sliding_1s_send_starts_s": round(send_at, 3),
        "flow_limit_answers": flow,
        "calls_per_second": per_second,
        "first_3s_arrivals_per_100ms": ramp,
        "first_150_sends_ms": [round(1000 * (x - sends[0]), 1) for x in sends[:150]],
        "send_to_arrival_ms": {
            "first_100_p50": _ms(first, 0.5),
            "first_100_max": _ms(first, 1.0),
            "all_p50": _ms(every, 0.5),
            "all_p99": _ms(every, 0.99),
            "all_max": _ms(every, 1.0),
        },
    }
    return [
        Row(
            f"{desc}: achieved vendor call rate",
            f"{achieved:.1f} calls/s",
            f"{achieved / rate:.3f}× R",
            "≥ 0.97× R",
            achieved >= 0.97 * rate,
            round(achieved, 2),
            "calls/s",
            round(achieved / rate, 4),
            details=details,
        ),
        Row(
            f"{desc}: busiest calendar second (the simulator's QPS window)",
            f"{calendar} calls",
            f"{calendar / rate:.2f}× R",
            f"≤ R + burst = {limit}",
            calendar <= limit,
            calendar,
            "calls",
            round(calendar / rate, 3),
        ),
        Row(
            f"{desc}: busiest sliding 1-s window",
            f"{arrival} calls ({send}), {arrival_at:.1f} s into the drain",
            f"{arrival / rate:.2f}× R",
            f"≤ R + burst = {limit}",
            arrival <= limit and send <= limit,
            arrival,
            "calls",
            round(arrival / rate, 3),
        ),
        Row(
            f"{desc}: isv.FLOW_LIMIT answers",
            f"{flow}",
            "",
            "0",
            flow == 0,
            flow,
            "answers",
        ),
    ]


# --- enqueue -------------------------------------------------------------------------------------------


def _queued_keys(stack: Stack, queue: str) -> tuple[int, int]:
    """Bind keys on ``queue`` (all, distinct), whatever the messages carry: one key (``axb.bind``)
    or many (``axb.bind_many``: the body's ``args[0]`` is the list of keys)."""
    total, distinct = 0, set()
    step = 5000
    for start in range(0, stack.r.llen(queue), step):
        for raw in stack.r.lrange(queue, start, start + step - 1):
            msg = json.loads(raw)
            args = json.loads(base64.b64decode(msg["body"]))[0]
            task = msg["headers"]["task"]
            batch = args[0] if task == "axb.bind_many" else [args[0]]
            if not isinstance(batch, list) or not all(isinstance(k, str) for k in batch):
                raise RuntimeError(f"unexpected {task} message on {queue}: args {str(args)[:200]}")
            total += len(batch)
            distinct.update(batch)
    return total, len(distinct)


def enqueue(stack: Stack, cfg: Config) -> list[Row]:
    n = cfg.enqueue_rows
    path = OUT / f"backfill-{n}.csv"
    exp = expiration()
    with path.open("w", newline="") as fh:
        w = safe_writer(fh)
        w.writerow(["PoolKey", "PhoneNoA", "PhoneNoB", "Expiration", "OutId"])
        for i in range(n):
            a, b = phones(i)
            w.writerow(["FC100000001", a, b, exp, f"bf-{i}"])
    for leftover in (path.with_name(path.name + ".progress"), path.with_name(path.name + ".rejects.csv")):
        leftover.unlink(missing_ok=True)

    stack.fresh()
    stack.log(f"enqueue: .delay() loop of {n:,} rows")
    t = time.perf_counter()
    naive = subprocess.run(
        [sys.executable, "-m", "bench.naive_enqueue", str(path)],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
        cwd=OUT.parent.parent,
    )
    naive_wall = time.perf_counter() - t
    naive_sum = json.loads(naive.stdout.strip().splitlines()[-1])
    naive_queued = stack.r.llen("naive.bind")

    stack.fresh()
    stack.log(f"enqueue: axb backfill of {n:,} rows")
    queue = "bench.backfill"
    t = time.perf_counter()
    bf = subprocess.run(
        [sys.executable, "-m", "worker.cli", "backfill", str(path), "--json"],
        env=stack.env(AXB_QUEUE=queue),
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
        cwd=OUT.parent.parent,
    )
    bf_wall = time.perf_counter() - t
    summary = json.loads(bf.stdout)
    messages = stack.r.llen(queue)
    queued, distinct = _queued_keys(stack, queue)
    stack.fresh()
    for used in (path, path.with_name(path.name + ".progress"), path.with_name(path.name + ".rejects.csv")):
        used.unlink(missing_ok=True)
    if queued != n or distinct != n or summary.get("enqueued") != n:
        raise RuntimeError(
            f"backfill enqueued {summary.get('enqueued')} and left {queued} keys ({distinct} distinct) "
            f"in {messages} messages, not {n}"
        )
    summary["messages"] = messages
    if naive_queued != n:
        raise RuntimeError(f".delay() loop left {naive_queued} messages, not {n}")

    bf_rate = float(summary["rows_per_second"])
    naive_rate = float(naive_sum["rows_per_second"])
    bf_wall_rate, naive_wall_rate = n / bf_wall, n / naive_wall
    stack.log(f"enqueue: backfill {bf_rate:,.0f} rows/s, .delay() {naive_rate:,.0f} rows/s")
    return [
        Row(
            f"enqueue (baseline): naive task `.delay()` loop, same {n:,}-row CSV",
            f"{_per_s(naive_rate)} rows/s",
            "baseline",
            "",
            None,
            naive_rate,
            "rows/s",
            details={**naive_sum, "wall_s_with_startup": round(naive_wall, 3)},
        ),
        Row(
            f"enqueue: `axb backfill` of {n:,} rows (its own timing)",
            f"{_per_s(bf_rate)} rows/s",
            f"{bf_rate / naive_rate:.2f}× .delay()",
            "≥ 20,000 rows/s",
            bf_rate >= 20_000,
            bf_rate,
            "rows/s",
            round(bf_rate / naive_rate, 3),
            details={**summary, "wall_s_with_startup": round(bf_wall, 3)},
        ),
        Row(
            f"enqueue: `axb backfill` of {n:,} rows, whole command incl. start-up",
            f"{_per_s(bf_wall_rate)} rows/s ({bf_wall:.1f} s)",
            f"{bf_wall_rate / naive_wall_rate:.2f}× .delay() (same basis)",
            "",
            None,
            bf_wall_rate,
            "rows/s",
            round(bf_wall_rate / naive_wall_rate, 3),
        ),
    ]


# --- latency -------------------------------------------------------------------------------------------


def _pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


def latency(stack: Stack, cfg: Config) -> list[Row]:
    lat, rate = cfg.vendor_latency_ms, cfg.latency_rate
    total = int(rate * cfg.latency_s)
    stack.fresh(latency_ms=lat)
    point_producer(stack)
    from worker.producer import enqueue_bind

    workers = start_ours(stack, "lat", processes=1, concurrency=cfg.concurrency, rate_qps=None, burst=None)
    with stack.running(workers):
        warm = [enqueue_bind(r).key for r in bind_requests(20, "warm", start=900_000)]
        wait_terminal(stack, warm, workers, stall_s=90, poll_s=0.2)
        stack.log(f"latency: open loop, {rate:g} binds/s for {cfg.latency_s:g} s, simulator {lat:g} ms")
        reqs = bind_requests(total, "lat")
        sent: list[tuple[str, float, float]] = []
        start = time.monotonic() + 0.1
        for i, req in enumerate(reqs):
            pause = start + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            t0 = time.time()
            key = enqueue_bind(req).key
            sent.append((key, t0, time.time() - t0))
        behind = time.monotonic() - (start + (total - 1) / rate)
        wait_terminal(stack, [k for k, _, _ in sent], workers, stall_s=60, poll_s=0.2)
    pipe = stack.r.pipeline(transaction=False)
    from worker import keys as k

    for key, _, _ in sent:
        pipe.hmget(k.bind_record(key), "status", "succeeded_at")
    lat_ms, failed = [], 0
    for (_, t0, _), (status, s_at) in zip(sent, pipe.execute(), strict=True):
        if status != "succeeded":
            failed += 1
            continue
        lat_ms.append(int(s_at) - t0 * 1000)
    lat_ms.sort()
    call_ms = sorted(c * 1000 for _, _, c in sent)
    p50, p99 = _pct(lat_ms, 50), _pct(lat_ms, 99)
    target = lat + 25
    stack.log(f"latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    desc = f"latency: enqueue→result at {rate:g} binds/s, simulator {lat:g} ms"
    cfg.notes.append(
        f"Latency: 1× `axb worker --pool threads -c {cfg.concurrency}` with project defaults; an open-loop "
        f"producer calls `enqueue_bind` {rate:g} times a second for {cfg.latency_s:g} s ({total} binds, "
        "after 20 warm-up binds); latency = the record's succeeded_at minus the moment enqueue_bind was "
        "called (same clock; a producer polling `handle.result()` adds its poll interval)."
    )
    details = {
        "binds": total,
        "failed": failed,
        "p50_ms": round(p50, 1),
        "p90_ms": round(_pct(lat_ms, 90), 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(lat_ms[-1], 1),
        "min_ms": round(lat_ms[0], 1),
        "enqueue_call_p50_ms": round(_pct(call_ms, 50), 2),
        "enqueue_call_p99_ms": round(_pct(call_ms, 99), 2),
        "producer_behind_schedule_s": round(behind, 3),
    }
    return [
        Row(
            f"{desc}: p50",
            f"{p50:.1f} ms",
            f"vendor {lat:g} + {p50 - lat:.1f} ms",
            "",
            None,
            round(p50, 1),
            "ms",
            details=details,
        ),
        Row(
            f"{desc}: p99",
            f"{p99:.1f} ms",
            f"vendor {lat:g} + {p99 - lat:.1f} ms",
            f"< {target:g} ms",
            p99 < target,
            round(p99, 1),
            "ms",
        ),
    ]


# --- memory --------------------------------------------------------------------------------------------


def _k(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n:,}"


def memory(stack: Stack, cfg: Config) -> list[Row]:
    total, step, p = cfg.memory_n, cfg.memory_step, cfg.processes
    stack.fresh(latency_ms=0)
    workers = start_ours(stack, "mem", processes=p, concurrency=cfg.concurrency)
    samples: list[tuple[int, list[float]]] = []  # binds done, RSS of each worker process (MB)
    started = time.monotonic()
    with stack.running(workers):
        for b in range(total // step):
            keys, _ = enqueue_ours(stack, bind_requests(step, "mem", start=b * step), OURS_QUEUE)
            wait_terminal(stack, keys, workers, stall_s=60, poll_s=1.0)
            rss = [sum(rss_mb(pid) for pid in w.pids()) for w in workers]
            samples.append(((b + 1) * step, rss))
            stack.log(
                f"memory: {(b + 1) * step:,} binds, worker RSS " + ", ".join(f"{x:.1f}" for x in rss) + " MB"
            )
    elapsed = time.monotonic() - started
    first, last = samples[0][1], samples[-1][1]
    growth = max(b / a - 1 for a, b in zip(first, last, strict=True))
    per_proc = "; ".join(f"{a:.1f} → {b:.1f}" for a, b in zip(first, last, strict=True))
    trail = ", ".join(f"{_k(n)}: " + "/".join(f"{x:.0f}" for x in mbs) for n, mbs in samples)
    cfg.notes.append(
        f"Memory: {p}× `axb worker --pool threads -c {cfg.concurrency}`, simulator 0 ms, {total:,} binds "
        f"enqueued in batches of {step:,}; RSS of each worker process after each batch has finished "
        f"({trail} MB); {elapsed:.0f} s."
    )
    return [
        Row(
            f"memory: RSS per worker process, {_k(samples[0][0])} → {_k(total)} binds ({p} processes)",
            f"{per_proc} MB",
            f"+{growth * 100:.1f} % (largest)" if growth >= 0 else f"{growth * 100:.1f} % (largest)",
            "flat: ≤ +10 %",
            growth <= 0.10,
            round(max(last), 1),
            "MB",
            round(1 + growth, 4),
            details={
                "samples_mb": {str(n): [round(x, 1) for x in mbs] for n, mbs in samples},
                "seconds": round(elapsed, 1),
            },
        ),
    ]


SECTIONS: dict[str, tuple[Callable[[Stack, Config], list[Row]], str, str]] = {
    "throughput": (throughput, "throughput", ""),
    "scaling": (scaling, "scaling", "≥ 0.97× R, no window > R + burst, 0 FLOW_LIMIT"),
    "ratelimit": (rate_fidelity, "rate-limit fidelity", "≥ 0.97× R, no window > R + burst, 0 FLOW_LIMIT"),
    "latency": (latency, "latency at light load", "p99 < vendor + 25 ms"),
    "enqueue": (enqueue, "enqueue", "≥ 20,000 rows/s"),
    "memory": (memory, "memory", "flat RSS"),
    "wait": (wait_cost, "Redis WAIT (1 replica)", ""),
    "api": (
        http_door,
        "HTTP door (axb api)",
        "batch ≥ 0.5× enqueue_binds; POST → callback p99 ≤ vendor + 50 ms",
    ),
}


def run_section(name: str, stack: Stack, cfg: Config) -> list[Row]:
    fn, scenario, target = SECTIONS[name]
    rows: list[Row] = []
    _guard(rows, scenario, target, lambda: fn(stack, cfg), stack)
    return rows
