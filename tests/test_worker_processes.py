"""Real ``axb worker`` processes: the rate limit holds across them; they refuse bad settings."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_fixture import ROOT, WorkerProcess, apply_env, axb_env, wait_until
from tests.test_pipeline import request
from worker.producer import enqueue_binds
from worker.runtime import Runtime


@pytest.mark.slow
def test_the_rate_limit_holds_across_two_worker_processes(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """R=20/s shared by two processes: the simulator sees about R a second, not 2R, and no FLOW_LIMIT.

    The limiter controls when calls leave; on a loaded machine they can arrive bunched, so the
    simulator's per-second cap here allows a jitter margin of a few calls. The exact fidelity
    figures (>= 97 % of R, no second above R + burst) are measured by ``make bench``.
    """
    rate, burst, n, jitter = 20, 2, 70, 3
    apply_env(monkeypatch, {"AXB_RATE_LIMIT_QPS": str(rate), "AXB_RATE_LIMIT_BURST": str(burst)})
    simulator.set_faults(qps_limit=rate + burst + jitter)
    env = axb_env()
    workers = [WorkerProcess(env, "-c", "8", log_path=tmp_path / f"w{i}.log").start() for i in range(2)]
    try:
        result = enqueue_binds([request(200 + i) for i in range(n)])
        assert not result.rejected
        store = pipeline.store
        keys = [h.key for h in result.handles]
        wait_until(lambda: all(r is not None and r.terminal for r in store.get_many(keys)), timeout=60)
    finally:
        for w in workers:
            w.stop()
    records = store.get_many(keys)
    assert all(r is not None and r.status == "succeeded" for r in records)
    ledger = simulator.ledger()
    binds = [c for c in ledger["calls"] if c["action"] == "BindAxb"]
    refused = Counter(c["code"] for c in binds if c["code"] != "OK")
    assert not refused, f"the simulator throttled or refused calls: {dict(refused)}"
    assert len(binds) == n
    per_second = Counter(int(c["time"]) for c in binds)
    assert max(per_second.values()) <= rate + burst + jitter
    # Over the busy span the two processes together achieve about R: a per-process limit
    # would give 2R, a stalled one far less.
    span = max(c["time"] for c in binds) - min(c["time"] for c in binds)
    achieved = (n - burst - 1) / span
    assert rate * 0.7 <= achieved <= rate * 1.25, achieved


def test_a_worker_refuses_to_start_with_a_visibility_timeout_too_short(pipeline: Runtime) -> None:
    """AXB_VISIBILITY_TIMEOUT_S below the hard time limit: the worker exits with a clear reason."""
    env = axb_env()
    env["AXB_VISIBILITY_TIMEOUT_S"] = "20"
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert b"AXB_VISIBILITY_TIMEOUT_S" in out.stderr + out.stdout


def test_a_real_worker_resumes_retries_from_the_delay_queue(
    pipeline: Runtime, simulator: Any, tmp_path: Path
) -> None:
    """In a real `axb worker`, the delay-queue pump (started on worker_ready) brings retries back."""
    simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=2)
    worker = WorkerProcess(axb_env(), "-c", "4", log_path=tmp_path / "w.log").start()
    try:
        handle = enqueue_binds([request(300)]).handles[0]
        res = handle.result(timeout=40)
    finally:
        worker.stop()
    assert res.ok and res.attempts == 3


def _children_of(pid: int) -> set[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def test_axb_worker_with_no_options_runs_one_process_per_core_and_restarts_a_killed_one(
    pipeline: Runtime, simulator: Any, tmp_path: Path
) -> None:
    """The default command: one worker process per core under one parent; kill -9 of a child
    starts a new one; the binds all succeed; SIGTERM stops every process warmly with status 0."""
    import os
    import signal

    cores = len(os.sched_getaffinity(0))
    env = axb_env()
    env.pop("AXB_WORKER_PROCESSES", None)
    worker = WorkerProcess(env, log_path=tmp_path / "w.log").start()
    assert worker.proc is not None
    parent = worker.proc.pid
    try:
        wait_until(lambda: len(_children_of(parent)) == cores, timeout=30)
        first = _children_of(parent)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        seen: list[set[int]] = []

        def replaced() -> bool:
            now = _children_of(parent)  # read once: the set that met the condition is the one checked
            seen.append(now)
            return len(now) == cores and victim not in now

        wait_until(replaced, timeout=30)
        children = seen[-1]
        assert len(children - first) == 1
        result = enqueue_binds([request(400 + i) for i in range(20)])
        assert not result.rejected
        keys = [h.key for h in result.handles]
        store = pipeline.store
        wait_until(lambda: all(r is not None and r.terminal for r in store.get_many(keys)), timeout=60)
        assert all(r is not None and r.status == "succeeded" for r in store.get_many(keys))
        worker.proc.terminate()
        assert worker.proc.wait(30) == 0
        wait_until(lambda: not any(Path(f"/proc/{c}").exists() for c in children), timeout=10)
    finally:
        worker.stop()


def test_a_supervised_worker_process_that_exits_with_a_status_stops_the_command_with_it(
    pipeline: Runtime,
) -> None:
    """`axb worker --processes 2` whose processes Celery refuses (an unknown option): the parent
    stops the rest and exits with their non-zero status instead of restarting them."""
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker", "--processes", "2", "--no-such-celery-option"],
        env=axb_env(),
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode not in (0, None)
    assert b"no-such-celery-option" in out.stdout + out.stderr


def test_the_threads_of_a_worker_share_one_result_backend() -> None:
    """Celery builds ``app.backend`` once per thread; the worker's start hands our tasks (which
    ignore their results) the main thread's, so 32 task threads do not build 32 more."""
    import threading

    from worker.queue.celery_app import app, share_result_backend

    app.loader.import_default_modules()  # the task modules, as a worker's start imports them
    task = app.tasks["axb.bind_many"]
    main = app.backend
    seen: list[Any] = []

    def look() -> None:
        seen.append((app.backend, task.backend))

    share_result_backend(app)
    t = threading.Thread(target=look)
    t.start()
    t.join()
    (thread_own, thread_task) = seen[0]
    assert thread_own is not main  # Celery's own: one per thread
    assert thread_task is main and task.backend is main  # ours: the one shared instance
    assert all(app.tasks[name].backend is main for name in ("axb.bind", "axb.unbind", "axb.callback"))
