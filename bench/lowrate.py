"""A backlog against a rate limit below the cluster's thread count: how much worker CPU per bind
goes into keys refused a slot (parked, coming back, refused again) while the limit is kept.

    .venv/bin/python -m bench.lowrate RATE N     # e.g. 50 3000: 2 workers × 32 threads, 20 ms vendor

Not part of ``make bench``; prints one line.
"""

from __future__ import annotations

import os
import sys
import time

from bench.drains import enqueue_ours, point_producer, start_ours, wait_terminal
from bench.harness import Stack, bind_requests, cpu_s


def main(argv: list[str]) -> int:
    rate, n = float(argv[0]), int(argv[1])
    stack = Stack()
    try:
        stack.start(pool_size=max(20_000, n))
        os.environ.update(stack.env())
        point_producer(stack)
        stack.fresh(latency_ms=20, qps_limit=int(rate) + 15)
        keys, _ = enqueue_ours(stack, bind_requests(n, "lr"))
        workers = start_ours(stack, "lr", processes=2, concurrency=32, rate_qps=rate, burst=None)
        t0 = time.time()
        with stack.running(workers):
            c0 = cpu_s([pid for p in workers for pid in p.pids()])
            wait_terminal(stack, keys, workers, stall_s=120)
            c1 = cpu_s([pid for p in workers for pid in p.pids()])
        seconds = time.time() - t0
        calls = [c for c in stack.ledger()["calls"] if c["action"] == "BindAxb"]
        flow = sum(1 for c in calls if "FLOW_LIMIT" in str(c["code"]))
        print(
            f"AXB_RATE_LIMIT_QPS={rate:g}: {n} binds in {seconds:.1f} s "
            f"({n / seconds:.1f}/s, start-up included); "
            f"worker CPU {c1 - c0:.1f} s = {1000 * (c1 - c0) / n:.1f} ms per bind; "
            f"{len(calls)} BindAxb calls, {flow} isv.FLOW_LIMIT"
        )
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:] or ["50", "3000"]))
