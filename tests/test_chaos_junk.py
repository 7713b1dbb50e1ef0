"""Junk in the middle of a bind backlog: every bind succeeds, each junk item becomes exactly one
dead letter, the worker process never exits (about 200 binds in `make test`; 2,000 in `make chaos`)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.chaos_harness import CHAOS_ENV, FULL, ChaosRun, budget
from tests.junk_messages import JUNK_PHONE, REASONS, junk_messages
from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env
from tests.test_chaos import expiration
from worker import errors
from worker.deadletters import DeadLetters
from worker.producer import enqueue_binds
from worker.runtime import Runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900 if FULL else 180)]


def test_junk_in_the_middle_of_a_backlog_costs_no_bind_and_no_worker(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every kind of junk, several times, between chunks of a backlog; then one worker drains it."""
    apply_env(monkeypatch, CHAOS_ENV)
    simulator.set_faults(latency_ms=20, jitter_ms=5)
    n, copies, parts = (2000, 3, 4) if FULL else (200, 1, 2)
    run = ChaosRun(pipeline, simulator, n, f"junk-{uuid.uuid4().hex[:4]}")
    reqs = run.requests(expiration())
    queue = pipeline.settings.queue
    junk_kinds = junk_messages(queue)
    pushed: Counter[str] = Counter()
    step = n // parts
    for p in range(parts):
        result = enqueue_binds(reqs[p * step : (p + 1) * step if p < parts - 1 else n])
        assert not result.rejected
        run.keys += [h.key for h in result.handles]
        if p < parts - 1:  # junk between the chunks: in the middle of the backlog
            for kind, item in junk_kinds.items():
                if pushed[kind] < copies:
                    pipeline.redis.lpush(queue, item)
                    pushed[kind] += 1
    assert len(run.keys) == n and sum(pushed.values()) == len(REASONS) * copies

    worker = WorkerProcess(axb_env(), "-c", "16", log_path=tmp_path / "w.log").start()
    assert worker.proc is not None
    proc, pid = worker.proc, worker.proc.pid
    started = time.monotonic()
    exits = 0
    try:
        deadline = started + budget(90, n)
        while run.unfinished() and time.monotonic() < deadline:
            exits += proc.poll() is not None
            assert exits == 0, f"the worker exited with status {proc.returncode}"
            time.sleep(0.25)
        drained_s = time.monotonic() - started
        exits += proc.poll() is not None
    finally:
        worker.stop()
    rep = run.check(drained_s)
    entries = DeadLetters(pipeline.redis).entries(code=errors.MALFORMED_MESSAGE, limit=100_000)
    by_kind = Counter(next(k for k, why in REASONS.items() if why in e.message) for e in entries)
    print(
        "\n| binds | junk items | dead letters | lost | duplicates | worker exits | time (s) |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {n} | {sum(pushed.values())} ({len(pushed)} kinds x {copies}) | {len(entries)} | {rep.lost} "
        f"| {rep.duplicated} | {exits} | {drained_s:.1f} |"
    )
    assert rep.lost == 0, run.diagnose()
    assert rep.succeeded == n and rep.dead_lettered == 0
    assert rep.duplicated == 0 and rep.silent_duplicates == 0
    assert by_kind == pushed
    assert len(entries) == sum(pushed.values())
    assert all(JUNK_PHONE not in e.raw for e in entries)
    assert exits == 0 and proc.pid == pid
    assert pipeline.redis.llen(queue) == 0
