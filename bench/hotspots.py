"""Where our worker spends its CPU: ``python -m bench --profile`` (0 ms), or on its own:

    python -m bench.hotspots -n 2000 --latency-ms 0          # the default `axb worker`, --gil
    python -m bench.hotspots -n 2000 --latency-ms 20 --all   # every active thread, not only the GIL's

Drains a backlog through ``axb worker`` (as the throughput section does) with ``py-spy record``
attached to every worker process, then ranks functions by *self* time (the sampled frame is the
function itself) and *total* time (the function is anywhere on the stack), packages by self
time, and the threads by role (Celery's consumer loop, the task threads, the delay pump and the
other background threads). py-spy is not a project dependency: ``.venv/bin/pip install py-spy``.
The profile is a separate drain, so the sampling never disturbs the benchmark's own figures.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.drains import OURS_QUEUE, enqueue_ours, point_producer, start_ours, wait_terminal
from bench.harness import OUT, Stack, bind_requests, cpu_s

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _package(path: str) -> str:
    """py-spy names files relative to their ``sys.path`` entry: ``redis/client.py``, ``threading.py``,
    ``worker/store.py`` (ours), ``<frozen abc>``."""
    if path.startswith("<"):
        return "stdlib"
    top = path.split("/", 1)[0].removesuffix(".py")
    if top in sys.stdlib_module_names:
        return "stdlib"
    return top


def _role(frames: list[tuple[str, str]]) -> str:
    """Which thread of a worker process a stack is from, told by the code on it."""
    paths = {p for _, p in frames}
    names = {f for f, _ in frames}
    if "worker/queue/pump.py" in paths:
        return "delay pump (watchdog, retention)"
    if "asynloop" in names:
        return "consumer loop (main thread)"
    if "tasks/bind.py" in paths or "concurrent/futures/thread.py" in paths:
        return "task threads"
    if "celery/utils/timer2.py" in paths:
        return "Celery's timer thread"
    if "worker/cli/processes.py" in paths:
        return "supervisor (parent process)"
    return f"other ({frames[0][0]} in {frames[0][1]})"


def summarize(raw_files: list[Path], top: int = 20, gil: bool = True, rate_hz: int = 100) -> str:
    self_t: Counter[str] = Counter()
    total_t: Counter[str] = Counter()
    pkg_t: Counter[str] = Counter()
    loop_t: Counter[str] = Counter()
    role_t: Counter[str] = Counter()
    samples = loop = 0
    for raw in raw_files:
        for line in raw.read_text().splitlines():
            stack, _, count_txt = line.rpartition(" ")
            if not stack or not count_txt.isdigit():
                continue
            count = int(count_txt)
            samples += count
            frames = []
            for frame in stack.split(";"):
                m = _FRAME.match(frame)
                if m is None or m["file"].isdigit():  # a process or thread label
                    continue
                frames.append((m["func"], m["file"]))
            if not frames:
                continue
            role_t[_role(frames)] += count
            func, path = frames[-1]
            self_t[f"{func} ({path})"] += count
            pkg_t[_package(path)] += count
            names = [f for f, _ in frames]
            if "asynloop" in names:
                loop += count
                below = frames[names.index("asynloop") + 1 :]
                for name in {f"{f} ({p})" for f, p in below if _package(p) in ("celery", "kombu")}:
                    loop_t[name] += count
            ours = {f"{f} ({p})" for f, p in frames if _package(p) in ("worker", "tasks")}
            for name in ours - {"<module> (worker/cli/__main__.py)", "worker_command (worker/cli/worker.py)"}:
                total_t[name] += count
    if samples == 0:
        return "no samples"

    def table(counter: Counter[str], title: str) -> list[str]:
        out = [f"| {title} | % of samples |", "|---|---|"]
        out += [f"| `{name}` | {100 * c / samples:.1f} |" for name, c in counter.most_common(top)]
        return out

    which = (
        "only threads holding the GIL, i.e. where the CPU goes"
        if gil
        else "every thread not idle in a system call: running, or waiting for the GIL or a lock"
    )
    lines = [
        f"{samples} samples (py-spy at {rate_hz} Hz, {which}); "
        f"Celery's consumer loop (main thread: receive, ack, events) {100 * loop / samples:.1f} %, "
        f"other threads {100 * (samples - loop) / samples:.1f} %.",
        "",
    ]
    lines += [*table(role_t, "thread (by the code on its stack)"), ""]
    lines += [*table(pkg_t, "package (self time)"), ""]
    lines += [*table(total_t, "our code, worker/ and tasks/ (total time: on the stack)"), ""]
    lines += [*table(self_t, "function (self time)"), ""]
    lines += table(loop_t, "inside Celery's consumer loop: celery/kombu functions (total time)")
    return "\n".join(lines)


def profile(
    stack: Stack,
    n: int,
    processes: int,
    concurrency: int,
    *,
    latency_ms: float = 0,
    gil: bool = True,
    argv: list[str] | None = None,
    top: int = 20,
    rate_hz: int = 100,
    blocking: bool = False,
) -> str:
    """``argv``: the options of one ``axb worker`` command instead of ``processes`` workers of
    ``concurrency`` threads (``[]``: the default command, whose children py-spy follows)."""
    py_spy = _py_spy()
    if py_spy is None:
        return "py-spy is not installed (.venv/bin/pip install py-spy); no profile taken."
    stack.fresh(latency_ms=latency_ms)
    point_producer(stack)
    keys, _ = enqueue_ours(stack, bind_requests(n, "prof"))
    messages = stack.r.llen(OURS_QUEUE)
    workers = start_ours(stack, "prof", processes=processes, concurrency=concurrency, argv=argv)
    raws: list[Path] = []
    spies: list[subprocess.Popen[bytes]] = []
    try:
        with stack.running(workers):
            stack.wait_first_take(OURS_QUEUE, messages)
            for w in workers:
                raw = OUT / f"profile-{w.name}.txt"
                raw.unlink(missing_ok=True)
                raws.append(raw)
                cmd = [py_spy, "record", "--pid", str(w.pid), "--format", "raw"]
                cmd += [] if blocking else ["--nonblocking"]
                cmd += ["--rate", str(rate_hz), "-o", str(raw)]
                cmd += ["--gil"] if gil else []
                cmd += ["--subprocesses"] if argv is not None else []
                spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            stack.log(f"profile: {n} binds at {latency_ms:g} ms, {len(workers)} worker command(s), py-spy")
            t0, c0 = time.monotonic(), cpu_s([pid for w in workers for pid in w.pids()])
            wait_terminal(stack, keys, workers, stall_s=60)
            wall_s = time.monotonic() - t0
            used_s = cpu_s([pid for w in workers for pid in w.pids()]) - c0
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                spy.wait(30)
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait(5)
    head = (
        f"{n} binds at {latency_ms:g} ms in {wall_s:.1f} s; worker CPU {1000 * used_s / n:.2f} ms/bind "
        "(inflated by the sampling)"
    )
    summary = head + "\n\n" + summarize([r for r in raws if r.exists()], top=top, gil=gil, rate_hz=rate_hz)
    (OUT / "hotspots.md").write_text(summary + "\n")
    return summary


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hotspots", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="binds to drain")
    p.add_argument("--latency-ms", type=float, default=0.0, help="the simulator's latency")
    p.add_argument("--all", action="store_true", help="every active thread, not only the GIL holder")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument(
        "--blocking",
        action="store_true",
        help="py-spy pauses the process for each sample: consistent stacks, slower drain",
    )
    p.add_argument(
        "--ours", default="", help='options of the `axb worker` command (default: none), e.g. "-c 8"'
    )
    args = p.parse_args()
    stack = Stack(quiet=False).start(pool_size=20_000)
    try:
        os.environ.update(stack.env())
        print(
            profile(
                stack,
                args.n,
                1,
                32,
                latency_ms=args.latency_ms,
                gil=not args.all,
                argv=args.ours.split(),
                top=args.top,
                rate_hz=args.rate,
                blocking=args.blocking,
            )
        )
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
