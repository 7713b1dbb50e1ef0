"""Redis Sentinel failover mid-drain: nothing lost, nothing bound twice, the worker follows.

A primary, one replica and three sentinels (tests/sentinel_cluster.py; failover in a few
seconds; the nodes' and sentinels' logs stay in the test's tmp_path). A backfill is drained by
a real `axb worker`; the primary is SIGKILLed mid-drain; the sentinels promote the replica; the
killed node comes back, empty, as a replica of the new primary (as a supervisor would restart
it), not promotable until its first sync is done. Every bind must end once
(tests/chaos_harness.py: bindings counted per key at the simulator) within two minutes of the
promotion, the worker must still be running and consuming (a batch enqueued after the
promotion is drained too), and WAIT (on by default with a Sentinel URL) is what keeps the
records a producer or a vendor call relied on.

300 binds in `make test` (about 30 s); 3,000 with AXB_CHAOS_FULL=1 (`make chaos`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.chaos_harness import CHAOS_ENV, FULL, ChaosRun
from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env, wait_until
from tests.sentinel_cluster import SentinelCluster
from worker.runtime import Runtime, get_runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900 if FULL else 240)]

N = 3000 if FULL else 300


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    # down-after 2 s: a loaded test machine must not make the sentinels fail over by themselves.
    c = SentinelCluster(tmp_path, down_after_ms=2000, failover_timeout_ms=4000).start()
    try:
        yield c
    finally:
        c.stop()


def expiration() -> str:
    return (datetime.now(UTC) + timedelta(hours=10)).strftime("%Y-%m-%d %H:%M:%S")


def test_the_primary_killed_mid_drain_fails_over_and_loses_nothing(
    pipeline: Runtime,
    simulator: Any,
    cluster: SentinelCluster,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """SIGKILL of the Redis primary mid-drain: 0 lost, 0 silent duplicates, all terminal within 2 min."""
    # A rate low enough that the drain lasts a while (N / rate: 5 s small, 30 s full).
    apply_env(
        monkeypatch,
        {**CHAOS_ENV, "AXB_REDIS_URL": cluster.url, "AXB_RATE_LIMIT_QPS": "100" if FULL else "60"},
    )
    simulator.set_faults(latency_ms=20, jitter_ms=5)
    rt = get_runtime()
    assert rt.store.wait.replicas == 1  # on by default with a Sentinel URL
    run = ChaosRun(rt, simulator, N, f"fo-{uuid.uuid4().hex[:4]}")
    log = tmp_path / "w.log"
    worker = WorkerProcess(axb_env(), "-c", "16", "-l", "INFO", log_path=log).start()
    try:
        run.enqueue(expiration())
        wait_until(lambda: run.unfinished() < run.n * 0.7, timeout=120)
        old = cluster.primary_port()
        done_at_kill = run.n - run.unfinished()
        cluster.kill(old)
        killed = time.monotonic()
        new = cluster.wait_promotion(old, timeout_s=60)
        promoted = time.monotonic()
        # The supervisor restarts it, empty: a replica of the new primary, not promotable until
        # its first sync is done (see the README: Production: Redis setups).
        cluster.start_node(old, replica_of=new, promotable=False)

        wait_until(lambda: cluster.replicas_in_sync() >= 1, timeout=60)
        cluster.make_promotable(old)
        more = ChaosRun(rt, simulator, 20, f"fo2-{uuid.uuid4().hex[:4]}")
        more.enqueue(expiration())  # the producer follows the failover by itself
        recover = run.wait(120, since=promoted)
        assert recover is not None, (run.diagnose(), cluster.describe(), missing(run))
        assert more.wait(60) is not None, (more.diagnose(), cluster.describe(), missing(more))
        assert worker.proc is not None and worker.proc.poll() is None  # never stopped
    finally:
        worker.stop()
    rep = run.check(recover)
    wait_lines = log.read_text(errors="replace").count("redis WAIT:")
    print(
        f"\n| Redis primary SIGKILL, Sentinel failover ({N} binds, killed at {done_at_kill} done) "
        f"| {rep.accepted} | {rep.lost} | {rep.silent_duplicates} | {rep.unresolved} "
        f"| {promoted - killed:.1f} | {recover:.1f} |"
        f"  codes={dict(rep.codes)} wait_shortfall_logs={wait_lines}"
    )
    assert rep.lost == 0 and rep.silent_duplicates == 0 and rep.duplicated == 0
    assert more.check().lost == 0
    assert recover < 120


def missing(run: ChaosRun) -> int:
    """Accepted keys with no record at all on the current primary."""
    return sum(1 for rec in run.rt.store.get_many(run.keys) if rec is None)
