"""CPU per bind of the delivery path, in one process, two source trees side by side.

    python -m bench.bind_cpu --tree old=/work/main --tree new=. -n 2000 --rounds 3

One ``redis-server`` and one simulator (latency 0 ms) are shared by every drain. Each drain is a
child process whose ``PYTHONPATH`` is one tree: it enqueues ``n`` binds through that tree's
producer (not timed), then works them off with ``--threads`` threads calling
``worker.execution.deliver_many`` on messages of ``--batch`` keys, exactly as the ``axb.bind_many``
task does (Celery's own consumer loop is left out, the same for both trees), and reports its
``time.process_time()`` over the drain divided by the binds that succeeded. The trees take turns
(old, new, old, new...), so that a loaded machine weighs on both alike. ``--spy`` records the
drains of one tree under ``py-spy`` (``--gil``) and prints a summary (bench/hotspots.py).

``--celery`` drains through the real thing instead: the tree's default ``axb worker`` command (one
process per core, Celery's consumer loop, acks, the pump), started after the backlog is enqueued;
its CPU (every process of the command, from ``/proc``) counts from its first take to the last
stored result, divided by the binds. ``--latency-ms`` sets the simulator's latency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _child(n: int, threads: int, batch: int, tag: str) -> dict[str, Any]:
    """Runs under the tree being measured (its ``worker`` package is on PYTHONPATH)."""
    import logging

    from bench.harness import bind_requests
    from worker.execution import deliver_many
    from worker.logs import setup_logging
    from worker.producer import enqueue_binds
    from worker.runtime import get_runtime
    from worker.settings import get_settings

    setup_logging(get_settings())  # INFO to stderr, as a worker logs (one line per outcome)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    rt = get_runtime()
    result = enqueue_binds(bind_requests(n + threads * batch, tag))
    keys = [h.key for h in result.handles]
    warm, work = keys[: threads * batch], keys[threads * batch :]
    batches = [work[i : i + batch] for i in range(0, len(work), batch)]
    lock = threading.Lock()

    def drain(own: list[list[str]]) -> None:
        while True:
            with lock:
                if not own:
                    return
                msg = own.pop()
            deliver_many(rt, msg, f"cpu:{tag}:{os.getpid()}:{id(msg)}")

    def run(msgs: list[list[str]]) -> None:
        if threads == 1:
            drain(msgs)
            return
        ts = [threading.Thread(target=drain, args=(msgs,)) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    run([warm[i : i + batch] for i in range(0, len(warm), batch)])  # connections, caches, imports
    spy = None
    if os.environ.get("BIND_CPU_SPY"):  # py-spy on this process for the timed drain only
        spy_raw = os.environ["BIND_CPU_SPY"]
        argv = [os.environ["BIND_CPU_PY_SPY"], "record", "--pid", str(os.getpid()), "--gil"]
        argv += ["--rate", "250", "--format", "raw", "--nonblocking", "-o", spy_raw]
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached
    prof = None
    if os.environ.get("BIND_CPU_CPROFILE"):  # deterministic profile (one thread is meaningful)
        import cProfile

        prof = cProfile.Profile(time.process_time)
        prof.enable()
    grind = bool(os.environ.get("BIND_CPU_CALLGRIND"))  # under valgrind: count the drain only
    if grind:
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=True)
    u0, c0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.monotonic()
    run(batches)
    cpu_s, wall_s = time.process_time() - c0, time.monotonic() - w0
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    if grind:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True, check=True)
    if prof is not None:
        prof.disable()
        prof.dump_stats(os.environ["BIND_CPU_CPROFILE"])
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    done = rt.store.get_many(work)
    ok = sum(1 for r in done if r is not None and r.status == "succeeded")
    return {
        "binds": len(work),
        "succeeded": ok,
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "sys_s": u1.ru_stime - u0.ru_stime,
        "switches": (u1.ru_nvcsw - u0.ru_nvcsw) + (u1.ru_nivcsw - u0.ru_nivcsw),
    }


def _celery_child(n: int, tag: str, options: list[str]) -> dict[str, Any]:
    """Runs under the tree being measured: enqueue ``n`` binds, then drain them through that
    tree's default ``axb worker`` command and read its CPU from /proc."""
    from bench.drains import messages_left
    from bench.harness import bind_requests, cpu_s, tree, wait_idle
    from worker import keys as redis_keys
    from worker.producer import enqueue_binds
    from worker.runtime import get_runtime

    rt = get_runtime()
    result = enqueue_binds(bind_requests(n, tag))
    work = [h.key for h in result.handles]
    queue = rt.settings.queue
    messages = rt.redis.llen(queue)
    argv = [sys.executable, "-m", "worker.cli", "worker", *options]
    log = Path(tempfile.gettempdir()) / f"bind-cpu-{tag}.log"
    # The backlog waits aside until every process of the command has started: otherwise one
    # process's start-up (about a second of CPU each) is counted while another already drains.
    # (BIND_CPU_NO_HOLD=1: as bench/drains.py does, the backlog there from the start.)
    hold = not os.environ.get("BIND_CPU_NO_HOLD")
    held = f"{queue}.held"
    if hold:
        rt.redis.rename(queue, held)
    with log.open("wb") as fh:
        worker = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        idle_s = wait_idle(lambda: tree(worker.pid), lambda: worker.poll() is None) if hold else 0.0
        if hold:
            rt.redis.rename(held, queue)
        deadline = time.monotonic() + 120
        while rt.redis.llen(queue) >= messages:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"the worker took nothing (see {log})")
            time.sleep(0.002)
        pids = tree(worker.pid)
        c0, w0, s0 = cpu_s(pids), time.monotonic(), _sys_s(pids)
        # The queue's counts while messages remain, every key's status only after (as the
        # throughput drains do: polling each key every 20 ms loaded the machine being measured).
        while messages_left(rt.redis, queue) > 0:
            if worker.poll() is not None or time.monotonic() - w0 > 600:
                raise SystemExit(f"the drain stalled with messages left (see {log})")
            time.sleep(0.02)
        remaining, ok = list(work), 0
        while remaining:
            pipe = rt.redis.pipeline(transaction=False)
            for k in remaining:
                pipe.hget(redis_keys.bind_record(k), "status")
            statuses = [st.decode() if isinstance(st, bytes) else st for st in pipe.execute()]
            ok += statuses.count("succeeded")
            remaining = [
                k
                for k, st in zip(remaining, statuses, strict=True)
                if st not in ("succeeded", "dead_lettered")
            ]
            if remaining:
                if worker.poll() is not None or time.monotonic() - w0 > 600:
                    raise SystemExit(f"the drain stalled at {len(remaining)} left (see {log})")
                time.sleep(0.02)
        pids = tree(worker.pid)
        cpu, wall = cpu_s(pids) - c0, time.monotonic() - w0
        sys_s = _sys_s(pids) - s0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(5)
    return {
        "binds": n,
        "succeeded": ok,
        "cpu_s": cpu,
        "sys_s": sys_s,
        "wall_s": wall,
        "idle_cpu_per_s": idle_s,
    }


def _sys_s(pids: list[int]) -> float:
    """System (kernel) CPU seconds of these processes."""
    from bench.harness import CLK_TCK

    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[12])
    return total / CLK_TCK


def _instructions(callgrind_out: Path) -> int:
    """Total instructions (Ir) of a callgrind output file (its ``totals:`` line)."""
    for line in callgrind_out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise ValueError(f"no totals in {callgrind_out}")


def _spy_summary(raws: list[Path]) -> str:
    from bench.hotspots import summarize

    return summarize(raws, top=25)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bind_cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", default=[], help="NAME=PATH of a source tree (repeatable)")
    p.add_argument("-n", type=int, default=2000, help="binds per drain")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="run the drains under valgrind's callgrind and report instructions per bind (load-proof; "
        "slow: use -n 200 --threads 1); CPU times are then meaningless",
    )
    p.add_argument("--spy", default="", help="NAME of a tree whose drains are recorded by py-spy")
    p.add_argument(
        "--celery", action="store_true", help="drain through the tree's default `axb worker` command"
    )
    p.add_argument("--latency-ms", type=float, default=0.0, help="the simulator's latency")
    p.add_argument(
        "--worker-options",
        default="",
        help='with --celery: options of `axb worker` (default none), e.g. "-c 8"',
    )
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        if args.celery:
            print(json.dumps(_celery_child(args.n, args.child, args.worker_options.split())))
        else:
            print(json.dumps(_child(args.n, args.threads, args.batch, args.child)))
        return 0

    from bench.harness import Stack

    trees = [t.split("=", 1) for t in args.tree] or [["this", str(Path(__file__).resolve().parent.parent)]]
    stack = Stack(quiet=True).start(pool_size=20_000)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
    raws: list[Path] = []
    out = Path(tempfile.mkdtemp(prefix="bind-cpu-"))
    try:
        for rnd in range(args.rounds):
            for name, path in trees:
                stack.fresh(latency_ms=args.latency_ms)
                env = stack.env(
                    PYTHONPATH=str(Path(path).resolve()),
                    AXB_QUEUE="axb.bench.cpu",
                    AXB_RATE_LIMIT_QPS="1000000",
                    AXB_RATE_LIMIT_BURST="1000",
                )
                # By file path: the child runs this script under the measured tree's packages.
                child = [sys.executable, str(Path(__file__).resolve()), "--child", f"{name}{rnd}"]
                child += ["-n", str(args.n), "--threads", str(args.threads), "--batch", str(args.batch)]
                child += ["--celery", f"--worker-options={args.worker_options}"] if args.celery else []
                child_argv = list(child)
                if args.callgrind:
                    grind_out = out / f"callgrind-{name}-{rnd}.out"
                    child = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
                    child += [f"--callgrind-out-file={grind_out}", *child_argv]
                    env.update(BIND_CPU_CALLGRIND="1")
                if args.spy == name:
                    beside = Path(sys.executable).with_name("py-spy")
                    spy = str(beside) if beside.exists() else shutil.which("py-spy")
                    if spy is None:
                        raise SystemExit("py-spy is not installed")
                    raw = out / f"{name}-{rnd}.txt"
                    raws.append(raw)
                    env.update(BIND_CPU_SPY=str(raw), BIND_CPU_PY_SPY=spy)
                done = subprocess.run(
                    child, env=env, cwd=path, capture_output=True, text=True, check=False, timeout=900
                )
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"the drain of {name} failed")
                res = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])
                if args.callgrind:
                    res["ir"] = _instructions(grind_out)
                results[name].append(res)
                per = 1000 * res["cpu_s"] / max(1, res["succeeded"])
                binds = max(1, res["succeeded"])
                idle = f", of which system {1000 * res['sys_s'] / binds:.3f}" if "sys_s" in res else ""
                if "idle_cpu_per_s" in res:
                    idle += f", idle {1000 * res['idle_cpu_per_s']:.0f} ms CPU/s"
                elif "switches" in res:
                    idle += f", {res['switches'] / binds:.1f} context switches/bind"
                if args.callgrind:
                    m_ir = res["ir"] / max(1, res["succeeded"]) / 1e6
                    print(f"round {rnd} {name:>6}: {m_ir:.3f} M instructions/bind")
                print(
                    f"round {rnd} {name:>6}: {res['succeeded']}/{res['binds']} succeeded, "
                    f"CPU {per:.3f} ms/bind, wall {res['wall_s']:.1f} s, load {os.getloadavg()[0]:.1f}{idle}",
                    flush=True,
                )
    finally:
        stack.close()
    print()
    for name, rs in results.items():
        per = [1000 * r["cpu_s"] / max(1, r["succeeded"]) for r in rs]
        print(
            f"{name:>6}: median {statistics.median(per):.3f} ms/bind (min {min(per):.3f}, max {max(per):.3f})"
        )
    if raws:
        print()
        print(_spy_summary([r for r in raws if r.exists()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
