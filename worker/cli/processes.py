"""The ``axb worker`` supervisor: N worker processes (one per core by default) under one parent.

Celery's own default is prefork with one child per core. Our tasks wait on the vendor, so each
process runs the threads pool (many binds in flight) and the parent runs one such process per
core, as gunicorn runs its workers:

- every child is ``axb worker --processes 1 ...`` (the same command a user could run), with its
  own node name ``axb<i>@%h``;
- SIGTERM / SIGINT / SIGQUIT are passed on once to every child (warm, warm, cold shutdown as
  Celery defines them); children live in their own process group, so a Ctrl-C in a terminal
  reaches them once, through the parent;
- a child killed by a signal (the OOM killer, ``kill -9``) is started again; its unacknowledged
  messages come back through the broker's visibility timeout and the watchdog, as after any
  crash. A child that exits with a status by itself (an unrecoverable error) stops the others
  and the parent exits with that status, so that a supervisor restarting on failure sees it;
- if the parent dies, even by ``kill -9``, each child gets SIGTERM (Linux ``PR_SET_PDEATHSIG``)
  and shuts down warmly;
- metrics: children count into ``PROMETHEUS_MULTIPROC_DIR`` and only the parent serves
  ``/metrics`` on ``AXB_METRICS_PORT``, summing them.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

__all__ = ["SUPERVISOR_PID_ENV", "auto_processes", "die_with_supervisor", "supervise"]

log = logging.getLogger("worker.cli.processes")

# Set in each child's environment: the parent's pid (the child stops if the parent is gone).
SUPERVISOR_PID_ENV = "AXB_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1
_RESTART_PAUSE_S = 1.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def auto_processes(
    *, pool: str, chosen_pool: bool, chosen_concurrency: bool, celery_args: tuple[str, ...] = ()
) -> int:
    """How many processes ``axb worker`` starts when neither ``--processes`` nor
    ``AXB_WORKER_PROCESSES`` says: one per core for the threads pool with no ``--pool`` / ``-c``
    given; one otherwise (an explicit ``-c N`` keeps meaning one process of N threads, prefork
    already has its own children, and a ``--pidfile`` or ``--detach`` names one process)."""
    if pool != "threads" or chosen_pool or chosen_concurrency:
        return 1
    if any(a.startswith(("--pidfile", "--detach")) for a in celery_args):
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def die_with_supervisor() -> None:
    """In a supervised child: get SIGTERM when the parent dies, and stop now if it already has."""
    parent = os.environ.get(SUPERVISOR_PID_ENV)
    if not parent:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):
        sys.exit(0)  # the parent died before prctl: nobody supervises this child


def _child_argv(
    i: int, pool: str, concurrency: int, loglevel: str, celery_args: tuple[str, ...]
) -> list[str]:
    named = any(a in ("-n", "--hostname") or a.startswith("--hostname=") for a in celery_args)
    return [
        sys.executable,
        "-m",
        "worker.cli",
        "worker",
        "--processes",
        "1",
        "--pool",
        pool,
        "-c",
        str(concurrency),
        "-l",
        loglevel,
        *(() if named else ("-n", f"axb{i}@%h")),
        *celery_args,
    ]


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def supervise(
    processes: int,
    *,
    pool: str,
    concurrency: int,
    loglevel: str,
    celery_args: tuple[str, ...],
    metrics_port: int | None,
) -> int:
    """Run ``processes`` worker processes until they have all stopped; returns the exit status."""
    env = dict(os.environ)
    env[SUPERVISOR_PID_ENV] = str(os.getpid())
    if metrics_port:
        env["AXB_METRICS_PORT"] = "0"  # children count into files; the parent serves them
    children: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}  # pid → (index, process)
    stopping: list[int] = []  # the signals received, in order

    def start(i: int) -> None:
        proc = subprocess.Popen(
            _child_argv(i, pool, concurrency, loglevel, celery_args), env=env, start_new_session=True
        )
        children[proc.pid] = (i, proc)

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)
        for _, proc in list(children.values()):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    from worker.queue.liveness import clear
    from worker.settings import get_settings

    clear(get_settings().liveness_dir)  # files of an earlier run's processes are not ours
    for i in range(processes):
        start(i)
    log.warning("axb worker: %d processes × %s pool, concurrency %d", processes, pool, concurrency)
    status = 0
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        i, proc = children.pop(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        proc.returncode = code
        _mark_dead(pid)
        if stopping:
            status = max(status, code if code > 0 else 0)
        elif code < 0:
            log.error("worker process %d (pid %d) killed by signal %d: starting it again", i, pid, -code)
            time.sleep(_RESTART_PAUSE_S)
            if not stopping:
                start(i)
        elif code > 0:
            log.error("worker process %d (pid %d) exited with status %d: stopping the others", i, pid, code)
            status = code
            forward(signal.SIGTERM, None)
    return status
