"""Baseline (b): a bare Celery no-op task on the same Redis: the engine's ceiling on the machine.

Celery's defaults (JSON, prefetch 4) with no result stored and late acks, so that the benchmark
sees a message leave Redis's ``unacked`` hash only once its task has run::

    celery -A bench.noop_app worker --pool solo

``BENCH_REDIS_URL`` and ``BENCH_NOOP_QUEUE`` point it at the benchmark's private Redis.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_NOOP_QUEUE", "noop")

app = Celery("noop", broker=REDIS_URL)
app.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True)


@app.task(name="noop.noop", ignore_result=True, acks_late=True)
def noop(key: str) -> None:
    """Takes one argument, like ``axb.bind`` (an idempotency key), and does nothing."""
