"""`axb worker-alive` (the liveness probe) against real ``axb worker`` processes: it passes while
their consumer loops turn (busy or not), and fails within its --max-age-s once one is stopped
(SIGSTOP), its loop is blocked, or it is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env, wait_until
from tests.test_pipeline import request
from tests.test_redis_full import axb
from worker.producer import enqueue_binds
from worker.runtime import Runtime

pytestmark = pytest.mark.slow

INTERVAL_S = 0.5
MAX_AGE_S = 4.0


def probe(directory: Path) -> subprocess.CompletedProcess[str]:
    return axb("worker-alive", "--max-age-s", str(MAX_AGE_S), "--dir", str(directory))


def passes(directory: Path) -> bool:
    return probe(directory).returncode == 0


def fails(directory: Path) -> bool:
    return probe(directory).returncode == 1


@pytest.fixture
def alive_dir(pipeline: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    directory = tmp_path / "alive"
    apply_env(monkeypatch, {"AXB_LIVENESS_DIR": str(directory), "AXB_LIVENESS_INTERVAL_S": str(INTERVAL_S)})
    return directory


def test_the_probe_follows_each_process_of_the_default_worker(alive_dir: Path, tmp_path: Path) -> None:
    """One file per process; a SIGSTOPped process fails the probe within --max-age-s and passes it
    again once continued; a warm stop removes the files (no worker: the probe fails)."""
    assert fails(alive_dir)  # nothing started yet
    cores = len(os.sched_getaffinity(0))
    env = axb_env()
    env.pop("AXB_WORKER_PROCESSES", None)
    worker = WorkerProcess(env, log_path=tmp_path / "w.log").start()
    assert worker.proc is not None
    try:
        wait_until(lambda: len(list(alive_dir.glob("axb*@*"))) == cores, timeout=60)
        assert passes(alive_dir)
        victim = min(json.loads(f.read_text())["pid"] for f in alive_dir.glob("axb*@*"))
        assert victim != worker.proc.pid  # a worker process, not the supervisor
        os.kill(victim, signal.SIGSTOP)
        try:
            stopped_at = time.monotonic()
            wait_until(lambda: fails(alive_dir), timeout=MAX_AGE_S + 10, interval=0.2)
            took = time.monotonic() - stopped_at
            out = probe(alive_dir).stdout
            assert f"pid {victim}" in out and "STALE" in out, out
        finally:
            os.kill(victim, signal.SIGCONT)
        assert MAX_AGE_S - INTERVAL_S <= took <= MAX_AGE_S + 5, took
        wait_until(lambda: passes(alive_dir), timeout=10, interval=0.2)
        worker.proc.terminate()
        assert worker.proc.wait(40) == 0
    finally:
        worker.stop()
    assert not list(alive_dir.glob("axb*@*"))
    assert fails(alive_dir)


def test_a_busy_worker_passes_and_a_killed_one_fails(
    pipeline: Runtime, alive_dir: Path, simulator: Any, tmp_path: Path
) -> None:
    """Every thread waiting on a slow vendor: the loop still turns, the probe passes throughout.
    kill -9 of a lone worker process (no supervisor to replace it): the probe fails."""
    simulator.set_faults(latency_ms=1200)
    worker = WorkerProcess(axb_env(), "--processes", "1", "-c", "2", log_path=tmp_path / "w.log").start()
    assert worker.proc is not None
    try:
        wait_until(lambda: passes(alive_dir), timeout=60, interval=0.2)
        result = enqueue_binds([request(900 + i) for i in range(12)])
        keys = [h.key for h in result.handles]

        def unfinished() -> int:
            return sum(1 for r in pipeline.store.get_many(keys) if r is None or not r.terminal)

        # About 12 × 1.2 s / 2 threads: both threads busy for several probe periods.
        wait_until(lambda: unfinished() < len(keys), timeout=30)
        busy_probes = 0
        while unfinished() > 2:
            assert passes(alive_dir)
            busy_probes += 1
        assert busy_probes >= 2
        wait_until(lambda: unfinished() == 0, timeout=60)
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(10)
        killed_at = time.monotonic()
        wait_until(lambda: fails(alive_dir), timeout=MAX_AGE_S + 10, interval=0.2)
        assert time.monotonic() - killed_at <= MAX_AGE_S + 5
    finally:
        worker.stop()
        simulator.clear_faults()


def test_a_consumer_loop_that_stops_turning_fails_the_probe(
    pipeline: Runtime, alive_dir: Path, simulator: Any, tmp_path: Path
) -> None:
    """The process runs but its consumer loop does not: the solo pool runs a task inside the
    loop, here one message of 12 binds at 1.2 s each. The probe fails while it runs and passes
    again once the loop turns (why the default is the threads pool, and a stuck loop is caught)."""
    simulator.set_faults(latency_ms=1200)
    worker = WorkerProcess(
        axb_env(), "--processes", "1", "--pool", "solo", log_path=tmp_path / "w.log"
    ).start()
    assert worker.proc is not None
    try:
        wait_until(lambda: passes(alive_dir), timeout=60, interval=0.2)
        result = enqueue_binds([request(950 + i) for i in range(12)])
        keys = [h.key for h in result.handles]
        wait_until(lambda: fails(alive_dir), timeout=MAX_AGE_S + 10, interval=0.2)
        assert worker.proc.poll() is None
        assert any(r is None or not r.terminal for r in pipeline.store.get_many(keys))
        wait_until(
            lambda: all(r is not None and r.terminal for r in pipeline.store.get_many(keys)), timeout=60
        )
        wait_until(lambda: passes(alive_dir), timeout=10, interval=0.2)
    finally:
        worker.stop()
        simulator.clear_faults()
