"""``axb worker``: start Celery worker process(es) with the project's defaults (extra args go to Celery).

With no options it uses every core: one threads-pool process per core under a small supervisor
(:mod:`worker.cli.processes`). ``--processes``, ``--pool`` and ``-c`` override it; ``-c N`` or
``--pool`` alone keep meaning one process.
"""

from __future__ import annotations

import os
import sys
import tempfile

import click


@click.command("worker", context_settings={"ignore_unknown_options": True})
@click.option(
    "--processes",
    default=None,
    type=click.IntRange(0, 1_000),
    help="worker processes (default AXB_WORKER_PROCESSES; 0: one per core with the threads pool "
    "when neither --pool nor -c is given, else 1)",
)
@click.option(
    "--pool", "pool_type", default=None, help="Celery pool of each process (default AXB_WORKER_POOL)"
)
@click.option(
    "-c",
    "--concurrency",
    default=None,
    type=click.IntRange(1, 10_000),
    help="threads (or children) per process (default AXB_WORKER_CONCURRENCY)",
)
@click.option("-l", "--loglevel", default=None)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(
    processes: int | None,
    pool_type: str | None,
    concurrency: int | None,
    loglevel: str | None,
    celery_args: tuple[str, ...],
) -> None:
    """Start Celery worker process(es) with the project's defaults (extra args go to Celery)."""
    from worker.cli.processes import auto_processes, die_with_supervisor

    die_with_supervisor()
    from worker.settings import get_settings

    s = get_settings()
    pool = pool_type or s.worker_pool
    count = processes if processes is not None else s.worker_processes
    if count == 0:
        count = auto_processes(
            pool=pool,
            chosen_pool=pool_type is not None,
            chosen_concurrency=concurrency is not None,
            celery_args=celery_args,
        )
    if s.metrics_port and (count > 1 or pool == "prefork") and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Children count into files that the main process aggregates when /metrics is scraped.
        # Set before prometheus_client is imported (worker.celery_app imports the metrics).
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="axb-metrics-")

    from worker.celery_app import check_settings
    from worker.logs import setup_logging

    check_settings(s)
    setup_logging(s)
    if count > 1:
        sys.exit(
            _supervise(count, pool, concurrency or s.worker_concurrency, loglevel or s.log_level, celery_args)
        )
    argv = [
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency or s.worker_concurrency}",
        f"--loglevel={loglevel or s.log_level}",
        f"--queues={s.queue}",
        # Event heartbeats (worker-online, worker-heartbeat every 2 s: how Flower and `celery
        # events` see a worker) go with task events; they only publish. Gossip and mingle
        # would read PUBSUB on the consumer loop (the stall described in celery_app.py): off.
        *(() if s.task_events else ("--without-heartbeat",)),
        "--without-mingle",
        "--without-gossip",
        *celery_args,
    ]
    # app.worker_main() drops the exit status of Celery's command (0 even after "Unrecoverable
    # error"); run the command ourselves and exit with it, so that a supervisor restarting on
    # failure sees the failure.
    from celery.bin.celery import celery as celery_command

    sys.exit(celery_command.main(args=["--app=worker.celery_app:app", *argv], standalone_mode=False) or 0)


def _supervise(count: int, pool: str, concurrency: int, loglevel: str, celery_args: tuple[str, ...]) -> int:
    from worker.cli.processes import supervise
    from worker.settings import get_settings

    s = get_settings()
    if s.metrics_port:
        from worker.connections import redis_client
        from worker.metrics import start_metrics_server

        start_metrics_server(s.metrics_port, redis_client(s), s.queue, s.access_key_id)
    return supervise(
        count,
        pool=pool,
        concurrency=concurrency,
        loglevel=loglevel,
        celery_args=celery_args,
        metrics_port=s.metrics_port,
    )


@click.command("worker-alive")
@click.option(
    "--max-age-s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="fail when a worker process's last beat is older than this",
)
@click.option("--dir", "directory", default=None, help="liveness directory (default AXB_LIVENESS_DIR)")
def worker_alive_command(max_age_s: float, directory: str | None) -> None:
    """Liveness probe: exit 0 when every worker process on this host beat within --max-age-s
    (their consumer loops are turning), 1 otherwise (stopped, stuck, killed, or none started)."""
    from worker.queue.liveness import check
    from worker.settings import get_settings

    where = directory or get_settings().liveness_dir
    ok, found = check(where, max_age_s)
    for r in found:
        verdict = "ok" if r.fresh(max_age_s) else "STALE"
        click.echo(f"{r.node} pid {r.pid}: {r.state}, last beat {r.age_s:.1f} s ago ({verdict})")
    if not found:
        click.echo(f"no worker process has beaten in {where}", err=True)
    sys.exit(0 if ok else 1)
