"""Completion callbacks under faults: every finished bind's callback arrives at least once
(small here; 10,000 binds with `make chaos`)."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.callback_receiver import Receiver
from tests.chaos_harness import CHAOS_ENV, FULL, ChaosRun, batch_size, budget
from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env, wait_until
from tests.test_chaos import expiration
from worker.callbacks import verify
from worker.runtime import Runtime

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500 if FULL else 400)]

SECRET = "whsec-chaos"


def acknowledged(receiver: Receiver) -> dict[str, list[Any]]:
    """The 2xx-answered POSTs by X-Axb-Key."""
    out: dict[str, list[Any]] = {}
    for post in list(receiver.received):
        if 200 <= post.answered < 300:
            out.setdefault(post.headers["X-Axb-Key"], []).append(post)
    return out


def test_callbacks_survive_a_flaky_receiver_a_killed_worker_and_a_redis_restart(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_server: Any
) -> None:
    """A receiver failing 30 % of POSTs, the worker SIGKILLed and restarted, Redis restarted:
    every bind ends once and its callback is acknowledged at least once, with the final
    status, a valid signature and one X-Axb-Delivery per bind."""
    apply_env(
        monkeypatch,
        {
            **CHAOS_ENV,
            "AXB_CALLBACK_ALLOW_PRIVATE": "true",
            "AXB_CALLBACK_SECRET": SECRET,
            "AXB_CALLBACK_BACKOFF_INITIAL_S": "0.05",
            "AXB_CALLBACK_BACKOFF_MAX_S": "0.5",
            "AXB_CALLBACK_TIMEOUT_S": "1",
        },
    )
    simulator.set_faults(latency_ms=20, jitter_ms=5)
    receiver = Receiver(fail_rate=0.3)
    run = ChaosRun(pipeline, simulator, batch_size(100), f"cb-{uuid.uuid4().hex[:4]}")
    env = axb_env()
    worker = WorkerProcess(env, "-c", "16", log_path=tmp_path / "w1.log").start()
    try:
        run.enqueue(expiration(), callback_url=receiver.url)
        wait_until(lambda: len(acknowledged(receiver)) > run.n * 0.3, timeout=budget(60, run.n))
        worker.stop(signal.SIGKILL)
        worker = WorkerProcess(env, "-c", "16", log_path=tmp_path / "w2.log").start()
        wait_until(lambda: len(acknowledged(receiver)) > run.n * 0.6, timeout=budget(90, run.n))
        redis_server.restart()
        started = time.monotonic()
        assert run.wait(budget(120, run.n)) is not None, run.diagnose()
        wait_until(lambda: len(acknowledged(receiver)) == run.n, timeout=budget(120, run.n))
        recover_s = time.monotonic() - started
    finally:
        worker.stop()
        receiver.close()
    rep = run.check()
    assert rep.lost == 0 and rep.silent_duplicates == 0 and rep.duplicated == 0
    acks = acknowledged(receiver)
    assert set(acks) == set(run.keys)
    records = dict(zip(run.keys, pipeline.store.get_many(run.keys), strict=True))
    for key, posts in acks.items():
        rec = records[key]
        assert rec is not None
        assert {p.doc["status"] for p in posts} == {rec.status}
        assert len({p.headers["X-Axb-Delivery"] for p in posts}) == 1
        assert all(verify(SECRET, p.body, p.headers["X-Axb-Signature"], now_s=p.at) for p in posts)
    extra = sum(len(p) for p in acks.values()) - run.n
    row = f"| callbacks: flaky receiver, SIGKILL, Redis restart | {run.n} | 0 lost | {extra} again |"
    print(f"{row} {recover_s:.1f} s |")
