"""Chaos: the vendor goes down in the middle of a backfill (small in `make test`; `make chaos`: 3,000
binds, 5 minutes down).

The simulator stays alive behind a TCP proxy (tests/tcp_proxy.py) that is cut off (connection
refused) and brought back on the same port, so its ledger counts every binding through the
outage. Expected: no dead letters, no duplicates, every bind bound soon after the vendor's return.
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
from tests.tcp_proxy import TcpProxy
from worker import errors
from worker.deadletters import DeadLetters
from worker.runtime import Runtime, get_runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200 if FULL else 120)]

N = 3000 if FULL else 200
DOWN_S = 300.0 if FULL else 10.0
RATE_QPS = "100" if FULL else "50"
# Within this long of the vendor's return every bind must be bound.
RESUME_WITHIN_S = 30.0 if FULL else 15.0


def expiration() -> str:
    return (datetime.now(UTC) + timedelta(hours=10)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def proxy(simulator: Any) -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", simulator.port).up()
    yield p
    p.close()


@pytest.fixture
def outage(pipeline: Runtime, simulator: Any, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    env = {
        **CHAOS_ENV,
        "AXB_ENDPOINT": proxy.url,
        "AXB_RATE_LIMIT_QPS": RATE_QPS,
        "AXB_RATE_LIMIT_BURST": "10",
        # The production retry settings (the run: 8 attempts each, then dead-lettered).
        "AXB_MAX_ATTEMPTS": "8",
        "AXB_BACKOFF_INITIAL_S": "0.5",
        "AXB_BACKOFF_MAX_S": "30",
    }
    if not FULL:
        env.update({"AXB_VENDOR_PROBE_EVERY_S": "0.5", "AXB_VENDOR_HOLD_RECHECK_S": "5"})
    apply_env(monkeypatch, env)
    simulator.set_faults(latency_ms=20, jitter_ms=5)
    return get_runtime()


def test_the_vendor_going_down_mid_backfill_dead_letters_nothing_and_everything_binds_on_its_return(
    outage: Runtime, simulator: Any, proxy: TcpProxy, tmp_path: Path
) -> None:
    """The vendor refuses connections for DOWN_S in the middle of a backfill: the cluster holds
    its calls (one probe at a time), no bind is dead-lettered or bound twice, and every bind is
    bound within RESUME_WITHIN_S of the vendor's return."""
    rt = outage
    run = ChaosRun(rt, simulator, N, f"vo-{uuid.uuid4().hex[:4]}")
    worker = WorkerProcess(axb_env(), "-c", "16", log_path=tmp_path / "w.log").start()
    try:
        run.enqueue(expiration())
        wait_until(lambda: run.unfinished() <= N // 2, timeout=120)
        proxy.down()
        down_at = time.monotonic()
        left_at_outage = run.unfinished()
        wait_until(lambda: rt.holds.vendor() is not None, timeout=30)
        hold = rt.holds.vendor()
        opened_after_s = time.monotonic() - down_at
        wait_until(lambda: time.monotonic() - down_at >= DOWN_S, timeout=DOWN_S + 5, interval=0.5)
        held_at_end = rt.holds.held_count(rt.settings.queue)
        left_at_return = run.unfinished()
        dead_during = DeadLetters(rt.redis).depth()
        proxy.up()
        recover = run.wait(RESUME_WITHIN_S + 60, since=time.monotonic())
        assert recover is not None, run.diagnose()
    finally:
        worker.stop()
    rep = run.check(recover)
    dead = DeadLetters(rt.redis).depth()
    assert hold is not None
    print(
        f"\n| vendor down {DOWN_S:.0f} s mid-backfill (connection refused) | {N} | {left_at_outage} "
        f"| {opened_after_s:.1f} | {hold.reason} | {held_at_end} | {dead} | {rep.duplicated} "
        f"| {rep.lost} | {recover:.1f} |",
        dict(rep.codes),
    )
    assert hold.reason == errors.VENDOR_UNREACHABLE
    assert left_at_return == left_at_outage > 0  # nothing bound while the vendor was down
    assert dead_during == 0 and dead == 0 and rep.dead_lettered == 0
    assert rep.lost == 0 and rep.duplicated == 0 and rep.silent_duplicates == 0
    assert rep.succeeded == N
    assert recover < RESUME_WITHIN_S
    assert rt.holds.vendor() is None
