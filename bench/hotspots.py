"""Where our worker spends its CPU at 0 ms vendor latency: ``python -m bench --profile``.

Drains a backlog through ``axb worker`` (as the throughput section does) with ``py-spy record``
attached to every worker process, then ranks functions by *self* time (the sampled frame is the
function itself) and *total* time (the function is anywhere on the stack), and packages by self
time. py-spy is not a project dependency: ``.venv/bin/pip install py-spy``. The profile is a
separate drain, so the sampling never disturbs the benchmark's own figures.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.drains import OURS_QUEUE, enqueue_ours, point_producer, start_ours, wait_terminal
from bench.harness import OUT, Stack, bind_requests

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


def summarize(raw_files: list[Path], top: int = 20) -> str:
    self_t: Counter[str] = Counter()
    total_t: Counter[str] = Counter()
    pkg_t: Counter[str] = Counter()
    loop_t: Counter[str] = Counter()
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

    lines = [
        f"{samples} samples (py-spy at 100 Hz, only threads holding the GIL, i.e. where the CPU goes); "
        f"Celery's consumer loop (main thread: receive, ack, events) {100 * loop / samples:.1f} %, "
        f"task threads {100 * (samples - loop) / samples:.1f} %.",
        "",
    ]
    lines += [*table(pkg_t, "package (self time)"), ""]
    lines += [*table(total_t, "our code, worker/ and tasks/ (total time: on the stack)"), ""]
    lines += [*table(self_t, "function (self time)"), ""]
    lines += table(loop_t, "inside Celery's consumer loop: celery/kombu functions (total time)")
    return "\n".join(lines)


def profile(stack: Stack, n: int, processes: int, concurrency: int) -> str:
    py_spy = _py_spy()
    if py_spy is None:
        return "py-spy is not installed (.venv/bin/pip install py-spy); no profile taken."
    stack.fresh(latency_ms=0)
    point_producer(stack)
    keys, _ = enqueue_ours(stack, bind_requests(n, "prof"))
    messages = stack.r.llen(OURS_QUEUE)
    workers = start_ours(stack, "prof", processes=processes, concurrency=concurrency)
    raws: list[Path] = []
    spies: list[subprocess.Popen[bytes]] = []
    try:
        with stack.running(workers):
            stack.wait_first_take(OURS_QUEUE, messages)
            for w in workers:
                raw = OUT / f"profile-{w.name}.txt"
                raw.unlink(missing_ok=True)
                raws.append(raw)
                spies.append(
                    subprocess.Popen(
                        [
                            py_spy,
                            "record",
                            "--pid",
                            str(w.pid),
                            "--format",
                            "raw",
                            "--gil",
                            "--nonblocking",
                            "--rate",
                            "100",
                            "-o",
                            str(raw),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            stack.log(f"profile: {n} binds at 0 ms through {processes} worker(s) under py-spy")
            wait_terminal(stack, keys, workers, stall_s=60)
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                spy.wait(30)
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.kill()
                spy.wait(5)
    summary = summarize([r for r in raws if r.exists()])
    (OUT / "hotspots.md").write_text(summary + "\n")
    return summary
