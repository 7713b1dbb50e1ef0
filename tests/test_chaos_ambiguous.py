"""AXB_ON_AMBIGUOUS=rebind under kill -9: every bind ends succeeded, and every binding beyond the
first of a key is a first copy listed in the possible-orphans ledger (small here; AXB_CHAOS_FULL=1
for 10,000 binds)."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.chaos_harness import CHAOS_ENV, FULL, ChaosRun, batch_size, budget
from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env, wait_until
from tests.test_chaos import expiration
from worker.orphans import list_possible_orphans
from worker.runtime import Runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500 if FULL else 400)]


def test_rebind_after_two_kills_mid_batch_binds_every_key_and_lists_every_extra_binding(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """kill -9 of the worker twice while calls are in flight (the simulator binds, the answers
    are lost), restarted each time: every bind succeeds; for every key the simulator's own
    count of bindings is 1 + the ledger entries of that key, and the keys with an entry (and only
    they) say possible_orphan."""
    apply_env(monkeypatch, {**CHAOS_ENV, "AXB_ON_AMBIGUOUS": "rebind"})
    # Calls spend 150 ms at the vendor before it binds: each kill catches a worker's worth in flight.
    simulator.set_faults(latency_ms=150, jitter_ms=20)
    run = ChaosRun(pipeline, simulator, batch_size(300), f"ka-{uuid.uuid4().hex[:4]}")
    env = axb_env()
    worker = WorkerProcess(env, "-c", "16", log_path=tmp_path / "w0.log").start()
    try:
        run.enqueue(expiration())
        for i, left in enumerate((0.8, 0.5), start=1):
            wait_until(lambda left=left: run.unfinished() < run.n * left, timeout=budget(120, run.n))
            worker.stop(signal.SIGKILL)
            worker = WorkerProcess(env, "-c", "16", log_path=tmp_path / f"w{i}.log").start()
        restarted = time.monotonic()
        recover = run.wait(budget(180, run.n), since=restarted)
        assert recover is not None, run.diagnose()
    finally:
        worker.stop()

    rep = run.check(recover)
    assert rep.lost == 0 and rep.succeeded == run.n and rep.dead_lettered == 0

    wanted = set(run.keys)
    entries = Counter(o.key for o in list_possible_orphans(pipeline.redis, limit=100_000) if o.key in wanted)
    by_out = simulator.ledger()["bindings_by_out_id"]
    records = dict(zip(run.keys, pipeline.store.get_many(run.keys), strict=True))
    wrong = {}
    for key in run.keys:
        bindings = by_out.get(key, [])
        rec = records[key]
        assert rec is not None
        if len(bindings) != 1 + entries[key] or rec.possible_orphan != bool(entries[key]):
            wrong[key] = (len(bindings), entries[key], rec.possible_orphan)
        # The binding the bind holds is the vendor's last one for the key.
        assert (rec.result or {}).get("SubsId") == bindings[-1]
    # A key bound more than once is a silent duplicate here only when the ledger misses a copy.
    rep.silent_duplicates = len(wrong)
    print(rep.row("rebind, 2 x SIGKILL worker"), dict(rep.codes))
    assert not wrong, wrong
    extra = sum(len(by_out.get(k, [])) - 1 for k in run.keys)
    per_key = Counter(entries.values())
    print(f"possible orphans: {sum(entries.values())} entries, {extra} extra bindings, per key {per_key}")
    # The kills did leave answers lost after the vendor bound (else this test proves nothing).
    assert sum(entries.values()) == extra >= 1
