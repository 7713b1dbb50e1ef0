"""``make bench``: every figure of the performance issue, measured side by side in one run.

    python -m bench            # the full run: 5,000-bind drains, 100k enqueue, 50k memory (~15 min)
    python -m bench --quick    # the same scenarios, small (a smoke run of a few minutes)
    python -m bench --only throughput,latency
    python -m bench --profile  # also: where our worker's CPU goes at 0 ms (needs py-spy)

One private ``redis-server`` (no persistence) and one Dypls simulator serve every scenario; each
scenario empties both first. Prints one markdown table and writes it, with a JSON twin holding
every raw figure, to ``bench/results/latest.md`` / ``latest.json`` (``latest-quick.*`` for
``--quick``, ``*-partial.*`` for ``--only``). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench.config import Config
from bench.drains import point_producer
from bench.harness import Stack
from bench.report import Row, markdown, write
from bench.scenarios import SECTIONS, run_section

RESULTS = Path(__file__).resolve().parent / "results"


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _versions() -> str:
    import celery
    import redis

    try:
        server = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout
        server = server.split("v=", 1)[1].split()[0]
    except (OSError, IndexError):
        server = "?"
    return (
        f"Python {platform.python_version()}, Celery {celery.__version__}, redis-py {redis.__version__}, "
        f"redis-server {server}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few minutes")
    parser.add_argument("--only", default="", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument(
        "-n", type=int, default=None, help="binds per throughput drain (default 5000; quick 1000)"
    )
    parser.add_argument("--enqueue-rows", type=int, default=None, help="rows to enqueue (default 100,000)")
    parser.add_argument(
        "--memory-binds", type=int, default=None, help="binds in the memory run (default 50,000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="throughput drains per configuration (median, min–max)"
    )
    parser.add_argument(
        "--ours",
        default="",
        help="options of our `axb worker` in the throughput drains (default: none, the command as a "
        'user starts it), e.g. "--processes 2 -c 16"',
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="no-op worker processes in the throughput drains (default: one per core)",
    )
    parser.add_argument(
        "--naive-concurrency", type=int, default=8, help="prefork children of the naive worker"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="threads per worker process of ours (rate, memory runs)"
    )
    parser.add_argument("--pool", default="threads", help="Celery pool of ours (rate, memory runs)")
    parser.add_argument("--profile", action="store_true", help="also profile our worker at 0 ms with py-spy")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.md / latest.json go")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    cfg = Config.quick_config() if args.quick else Config()
    if args.n:
        cfg.n = args.n
    if args.enqueue_rows:
        cfg.enqueue_rows = args.enqueue_rows
    if args.memory_binds:
        cfg.memory_n, cfg.memory_step = args.memory_binds, max(1, args.memory_binds // 5)
    cfg.repeat, cfg.processes, cfg.naive_concurrency = args.repeat, args.processes, args.naive_concurrency
    cfg.concurrency, cfg.pool = args.concurrency, args.pool
    cfg.ours_argv = args.ours.split()
    sections = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # Ctrl-C cleans up, even if started with it ignored
    started, load_before = time.monotonic(), _load()
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(
        f"{command.strip()}: {', '.join(sections)}; progress on stderr, logs in bench/_out/logs/",
        file=sys.stderr,
    )
    stack = Stack()
    rows: list[Row] = []
    hot = ""
    try:
        stack.start(pool_size=max(20_000, cfg.memory_n // 100))
        os.environ.update(stack.env())  # this process enqueues: same Redis, simulator, credentials
        point_producer(stack)
        for name in sections:
            rows.extend(run_section(name, stack, cfg))
        if args.profile:
            from bench.hotspots import profile

            hot = profile(stack, cfg.n, cfg.processes, cfg.concurrency)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every process the benchmark started", file=sys.stderr)
        return 130
    finally:
        stack.close()

    duration = time.monotonic() - started
    meta = {
        "command": command.strip(),
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs ({platform.machine()}), {_versions()}",
        "duration_s": round(duration, 1),
        "load_before": load_before,
        "load_after": _load(),
        "quick": cfg.quick,
        "sections": sections,
    }
    notes = [
        "Every figure comes from this one run on this machine, against the same simulator (one uvicorn "
        "process on the same cores) and the same redis-server (no persistence). Drain clocks start when a "
        "worker takes its first message (start-up excluded) and stop at the last stored result.",
        f"Ours elsewhere (rate limit, memory): `axb worker --pool {cfg.pool} -c {cfg.concurrency}` "
        "processes. Naive: bench/naive_app.py (official aliyun-python-sdk-core, autoretry_for + "
        f"retry_backoff, Redis result backend), prefork -c {cfg.naive_concurrency}. No-op: "
        "bench/noop_app.py.",
        *cfg.notes,
    ]
    table = markdown(rows)
    print()
    print(table)
    print()
    for extra in cfg.tables:
        print()
        print(extra)
    print()
    for note in notes:
        print(f"- {note}")
    # Only a full run of every section is "latest"; smoke and partial runs never overwrite it.
    stem = "latest" + ("-quick" if cfg.quick else "") + ("-partial" if args.only else "")
    md_path, json_path = write(args.out, rows, meta, notes, stem, cfg.tables)
    if hot:
        print("\nProfile of our worker at 0 ms (also in bench/_out/hotspots.md):\n")
        print(hot)
    print(
        f"\nwritten: {md_path.relative_to(Path.cwd()) if md_path.is_relative_to(Path.cwd()) else md_path}, "
        f"{json_path.name}; {duration / 60:.1f} min",
        file=sys.stderr,
    )
    if any(r.error for r in rows):
        return 2
    return 1 if args.strict and any(r.met is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
