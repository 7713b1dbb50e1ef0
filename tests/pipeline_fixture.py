"""Fixtures that run the whole pipeline: settings → simulator → Celery worker(s)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import queue_settled, wait_until
from worker.runtime import Runtime, get_runtime, reset_runtime
from worker.settings import Settings, get_settings, reset_settings_cache

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["FAST", "ROOT", "WorkerProcess", "apply_env", "axb_env", "queue_settled", "wait_until"]

FAST = {
    "AXB_BACKOFF_INITIAL_S": "0.05",
    "AXB_BACKOFF_MAX_S": "0.2",
    "AXB_NO_NUMBER_BACKOFF_INITIAL_S": "0.1",
    "AXB_NO_NUMBER_BACKOFF_MAX_S": "0.3",
    "AXB_RATE_LIMIT_QPS": "1000",
    "AXB_RATE_LIMIT_BURST": "50",
    "AXB_READ_TIMEOUT_S": "2",
    # The account hold, short so that tests with account-level codes move on.
    "AXB_ACCOUNT_HOLD_S": "0.5",
}


def apply_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> Settings:
    """Set AXB_* variables and rebuild settings, the runtime and the Celery app's connections."""
    from worker.celery_app import configure

    for k, v in values.items():
        monkeypatch.setenv(k, v)
    reset_settings_cache()
    reset_runtime()
    s = get_settings()
    configure(s)
    return s


def own_queue_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The process runtime on the current settings with a queue of its own; reset afterwards."""
    apply_env(monkeypatch, {"AXB_QUEUE": f"axb.test.{uuid.uuid4().hex[:8]}"})
    yield get_runtime()
    reset_runtime()
    reset_settings_cache()


@pytest.fixture
def rt(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The producer's runtime on the test Redis and a queue of its own (no worker, no simulator)."""
    yield from own_queue_runtime(monkeypatch)


@pytest.fixture
def pipeline(settings: Settings, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """Settings pointing at the test Redis and the running simulator, with fast backoff."""
    apply_env(
        monkeypatch, {**FAST, "AXB_ENDPOINT": simulator.url, "AXB_QUEUE": f"axb.test.{uuid.uuid4().hex[:8]}"}
    )
    rt = get_runtime()
    yield rt
    reset_runtime()
    reset_settings_cache()


@pytest.fixture
def celery_worker(pipeline: Runtime) -> Iterator[Any]:
    """An in-process Celery worker (threads pool) consuming the test queue, with the pump."""
    from celery.contrib.testing.worker import start_worker

    from worker.celery_app import app
    from worker.queue import start_pump, stop_pump

    with start_worker(
        app,
        pool="threads",
        concurrency=8,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=20,
        queues=[pipeline.settings.queue],
    ) as w:
        start_pump()  # started on worker_ready by real workers; harmless if already running
        yield w
    stop_pump()


class WorkerProcess:
    """A real ``axb worker`` in its own process (for multi-process and crash tests)."""

    def __init__(self, env: dict[str, str], *args: str, log_path: Path | None = None) -> None:
        self.env = env
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "worker",
                *(() if "-l" in self.args else ("-l", "WARNING")),
                *self.args,
            ],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self, sig: int | None = None, timeout: float = 30) -> None:
        if self.proc is None:
            return
        if sig is None:
            self.proc.terminate()
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def axb_env() -> dict[str, str]:
    """The current process environment (with the test's AXB_* values) for child processes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env
