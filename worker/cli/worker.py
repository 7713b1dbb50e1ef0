"""``axb worker``: start a Celery worker with the project's defaults (extra args go to Celery)."""

from __future__ import annotations

import os
import sys
import tempfile

import click


@click.command("worker", context_settings={"ignore_unknown_options": True})
@click.option("--pool", "pool_type", default=None, help="Celery pool (default AXB_WORKER_POOL)")
@click.option(
    "-c", "--concurrency", default=None, type=click.IntRange(1, 10_000), help="default AXB_WORKER_CONCURRENCY"
)
@click.option("-l", "--loglevel", default=None)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(
    pool_type: str | None, concurrency: int | None, loglevel: str | None, celery_args: tuple[str, ...]
) -> None:
    """Start a Celery worker with the project's defaults (extra args go to Celery)."""
    from worker.celery_app import check_settings
    from worker.logs import setup_logging
    from worker.settings import get_settings

    s = get_settings()
    check_settings(s)
    setup_logging(s)
    pool = pool_type or s.worker_pool
    if s.metrics_port and pool == "prefork" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Children count into files that the main process aggregates when /metrics is scraped.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="axb-metrics-")
    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency or s.worker_concurrency}",
        f"--loglevel={loglevel or s.log_level}",
        f"--queues={s.queue}",
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
        *celery_args,
    ]
    # app.worker_main() drops the exit status of Celery's command (0 even after "Unrecoverable
    # error"); run the command ourselves and exit with it, so that a supervisor restarting on
    # failure sees the failure.
    from celery.bin.celery import celery as celery_command

    sys.exit(celery_command.main(args=["--app=worker.celery_app:app", *argv], standalone_mode=False) or 0)
