"""The scaling section: 1, 2 and 4 worker processes sharing one account's rate limit.

Each run drains ``scale_qps × scale_s`` binds through ``axb worker --processes N`` with
AXB_RATE_LIMIT_QPS=``scale_qps`` (the project's burst), against the simulator at the vendor latency
with ``--qps-limit`` R + burst + a small margin, as the real account's limit. It reports the
throughput, the worker CPU per bind and the rate fidelity (achieved vendor call rate over R, the
busiest sliding 1-s window, isv.FLOW_LIMIT answers), as one row each and as a small table.
"""

from __future__ import annotations

from bench.config import Config
from bench.drains import drain_ours
from bench.harness import Stack, busiest_window
from bench.report import Row

__all__ = ["scaling"]


def scaling(stack: Stack, cfg: Config) -> list[Row]:
    from worker.settings import Settings

    rate = cfg.scale_qps
    burst = int(Settings.model_fields["rate_limit_burst"].default)
    sim_limit = rate + burst + max(2, rate // 20)
    n = int(rate * cfg.scale_s)
    rows: list[Row] = []
    table = [
        "| worker processes | throughput | worker CPU per bind | achieved call rate | busiest 1-s window "
        "| FLOW_LIMIT | fidelity target met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for processes in cfg.scale_processes:
        d = drain_ours(
            stack,
            f"scaling {processes}p",
            n,
            latency_ms=cfg.vendor_latency_ms,
            qps_limit=sim_limit,
            tag=f"s{processes}",
            argv=["--processes", str(processes)],
            rate_qps=rate,
            burst=None,
            stall_s=90,
        )
        calls = [c for c in stack.ledger()["calls"] if c["action"] == "BindAxb"]
        flow = sum(
            1 for c in calls if str(c["code"]) == "isv.FLOW_LIMIT" or str(c["code"]).startswith("Throttling")
        )
        admitted = sorted(float(c["time"]) for c in calls if c["fault"] != "throttled")
        span = admitted[-1] - admitted[0] if len(admitted) > 1 else 0.0
        achieved = len(admitted) / span if span > 0 else 0.0
        window, _ = busiest_window(admitted)
        met = achieved >= 0.97 * rate and window <= rate + burst and flow == 0
        cpu_ms = d.worker_cpu_s * 1000 / d.n
        rows.append(
            Row(
                f"scaling: `axb worker --processes {processes}`, R={rate}/s, simulator "
                f"{cfg.vendor_latency_ms:g} ms --qps-limit {sim_limit}, {n:,} backlog",
                f"{d.rate:,.0f} binds/s; CPU {cpu_ms:.2f} ms/bind; calls {achieved:.1f}/s, "
                f"busiest 1-s window {window}, FLOW_LIMIT {flow}",
                ratio=f"{achieved / rate:.3f}× R",
                target=f"≥ 0.97× R, window ≤ {rate + burst}, 0 FLOW_LIMIT",
                met=met,
                value=round(d.rate, 1),
                unit="binds/s",
                ratio_value=round(achieved / rate, 4),
                details={"drain": d.as_dict(), "max_sliding_1s": window, "flow_limit": flow},
            )
        )
        table.append(
            f"| {processes} | {d.rate:,.0f} binds/s | {cpu_ms:.2f} ms | {achieved:.1f}/s "
            f"({achieved / rate:.3f}× R) | {window} | {flow} | {'yes' if met else '**NO**'} |"
        )
    cfg.tables.append(
        f"Scaling (R = {rate}/s shared through the GCRA limiter, burst {burst}; simulator "
        f"{cfg.vendor_latency_ms:g} ms, --qps-limit {sim_limit}; `axb worker --processes N`, "
        "each process `--pool threads -c AXB_WORKER_CONCURRENCY`):\n\n" + "\n".join(table)
    )
    return rows
