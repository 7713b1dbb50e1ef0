"""The throughput section: the default ``axb worker`` beside the naive SDK task and a no-op.

Each configuration drains the same backlog ``cfg.repeat`` times (3 by default), interleaved so that
each measured drain sits next to its baselines in time: no-op → ours 0 ms → naive 20 ms → ours
20 ms → naive 0 ms, then again. A row gives the median rate, the spread (min–max) and the CPU per
message of the worker processes, the simulator and Redis. Ratios are of medians from this run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from bench.config import Config
from bench.drains import Drain, drain_naive, drain_noop, drain_ours
from bench.harness import Stack
from bench.report import Row

__all__ = ["throughput"]

CPU_TARGET = 0.35  # ours ≤ 0.35× the naive task's worker CPU per bind


def _per_s(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _median_rate(runs: list[Drain]) -> float:
    return statistics.median(d.rate for d in runs)


def _cpu_ms(d: Drain) -> float:
    return d.worker_cpu_s * 1000 / d.n


def _median_cpu(runs: list[Drain]) -> float:
    return statistics.median(_cpu_ms(d) for d in runs)


def _spread(values: list[float], fmt: Callable[[float], str]) -> str:
    return f"{fmt(min(values))}–{fmt(max(values))}" if len(values) > 1 else "1 run"


def throughput(stack: Stack, cfg: Config) -> list[Row]:
    n, p, lat = cfg.n, cfg.processes, cfg.vendor_latency_ms
    keys = ("noop", "ours0", "naive_lat", "ours_lat", "naive0")
    runs: dict[str, list[Drain]] = {k: [] for k in keys}
    errors: dict[str, str] = {}
    default_argv = cfg.ours_argv

    def attempt(name: str, fn: Callable[[], Drain]) -> None:
        try:
            runs[name].append(fn())
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            stack.log(f"{name}: {type(exc).__name__}: {exc}")
            errors[name] = f"{type(exc).__name__}: {exc}"[:300]

    for r in range(cfg.repeat):
        attempt("noop", lambda: drain_noop(stack, "no-op", n, pool="solo", processes=p))
        attempt(
            "ours0",
            lambda r=r: drain_ours(stack, "ours 0 ms", n, latency_ms=0, tag=f"o0r{r}", argv=default_argv),
        )
        attempt(
            "naive_lat",
            lambda: drain_naive(
                stack, f"naive {lat:g} ms", n, latency_ms=lat, concurrency=cfg.naive_concurrency
            ),
        )
        attempt(
            "ours_lat",
            lambda r=r: drain_ours(
                stack, f"ours {lat:g} ms", n, latency_ms=lat, tag=f"o20r{r}", argv=default_argv
            ),
        )
        attempt(
            "naive0",
            lambda: drain_naive(stack, "naive 0 ms", n, latency_ms=0, concurrency=cfg.naive_concurrency),
        )

    rows: list[Row] = []
    ours_cmd = "`axb worker" + ("".join(f" {a}" for a in default_argv)) + "`"
    where = f"{n:,} backlog, median of {cfg.repeat}" if cfg.repeat > 1 else f"{n:,} backlog"

    def drain_row(
        name: str, scenario: str, unit: str, base: str | None, base_name: str, target: float | None
    ) -> None:
        ds = runs[name]
        target_txt = f"≥ {target:g}× {base_name}" if target is not None else ""
        if not ds:
            rows.append(Row(scenario, "", target=target_txt, error=errors.get(name, "not run")))
            return
        rate = _median_rate(ds)
        ratio = rate / _median_rate(runs[base]) if base and runs[base] else None
        sim = statistics.median(d.sim_cpu_s * 1000 / d.n for d in ds)
        red = statistics.median(d.redis_cpu_s * 1000 / d.n for d in ds)
        figure = (
            f"{_per_s(rate)} {unit}/s ({_spread([d.rate for d in ds], _per_s)}); CPU per {unit[:-1]}: "
            f"worker {_median_cpu(ds):.2f} ms ({_spread([_cpu_ms(d) for d in ds], lambda x: f'{x:.2f}')}), "
            f"simulator {sim:.2f}, Redis {red:.2f}"
        )
        rows.append(
            Row(
                scenario,
                figure,
                ratio=(f"{ratio:.2f}× {base_name}" if ratio is not None else "baseline"),
                target=target_txt,
                met=(ratio >= target) if (ratio is not None and target is not None) else None,
                value=round(rate, 1),
                unit=f"{unit}/s",
                ratio_value=round(ratio, 3) if ratio is not None else None,
                details={"runs": [x.as_dict() for x in ds], "description": scenario},
            )
        )

    drain_row("noop", f"throughput (b): no-op task, {p}× `--pool solo`, {where}", "tasks", None, "", None)
    drain_row(
        "naive0", f"throughput: naive SDK task, simulator 0 ms, {where}", "binds", "noop", "no-op", None
    )
    drain_row(
        "ours0", f"throughput: ours {ours_cmd}, simulator 0 ms, {where}", "binds", "noop", "no-op", 0.70
    )
    drain_row(
        "naive_lat", f"throughput (a): naive SDK task, simulator {lat:g} ms, {where}", "binds", None, "", None
    )
    drain_row(
        "ours_lat",
        f"throughput: ours {ours_cmd}, simulator {lat:g} ms, {where}",
        "binds",
        "naive_lat",
        "naive",
        2.5,
    )
    for ours, naive, label in (("ours_lat", "naive_lat", f"{lat:g} ms"), ("ours0", "naive0", "0 ms")):
        if not (runs[ours] and runs[naive]):
            continue
        mine, theirs = _median_cpu(runs[ours]), _median_cpu(runs[naive])
        ratio = mine / theirs
        rows.append(
            Row(
                f"worker CPU per bind: ours {ours_cmd} vs naive, simulator {label}",
                f"{mine:.2f} ms vs {theirs:.2f} ms (medians)",
                ratio=f"{ratio:.2f}× naive",
                target=f"≤ {CPU_TARGET:g}× naive",
                met=ratio <= CPU_TARGET,
                value=round(mine, 3),
                unit="ms/bind",
                ratio_value=round(ratio, 3),
            )
        )
    cfg.notes.append(
        f"Throughput set-ups: ours {ours_cmd} as a user starts it (with no options: one threads-pool "
        "process per core, each `-c AXB_WORKER_CONCURRENCY`), AXB_RATE_LIMIT_QPS=1e6 so that the limit "
        "never binds (validation, signing, the GCRA limiter, idempotency records and result storage all "
        f"run); naive `celery -A bench.naive_app worker --pool prefork -c {cfg.naive_concurrency}`; no-op "
        f"{p}× `celery -A bench.noop_app worker --pool solo`. Ours is enqueued with `enqueue_binds` (the "
        "bulk path `axb backfill` uses), 20 binds per message (AXB_BATCH_SIZE); the naive task and the "
        "no-op take one message per task. CPU is per message: per bind for ours and naive, per task for "
        "the no-op."
    )
    for ds in (runs["ours0"], runs["ours_lat"], runs["naive_lat"], runs["naive0"]):
        for d in ds:
            if d.vendor_bindings is not None and d.vendor_bindings != d.ok:
                cfg.notes.append(
                    f"WARNING {d.label}: {d.ok} binds succeeded but the simulator holds "
                    f"{d.vendor_bindings} bindings ({d.vendor_calls} BindAxb calls)."
                )
    return rows
