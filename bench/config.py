"""What one ``python -m bench`` run measures: sizes, worker set-ups, rates."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Config:
    quick: bool = False
    n: int = 5000  # binds per throughput drain
    repeat: int = 3  # throughput drains per configuration (median and min–max reported)
    processes: int = 2  # ours and the no-op: worker processes for the throughput drains
    concurrency: int = 32  # ours: threads per worker process
    pool: str = "threads"  # ours: the Celery pool of the throughput drains
    naive_concurrency: int = 8
    rate_qps: int = 100
    rate_backlog: int = 3000
    enqueue_rows: int = 100_000
    latency_rate: float = 50.0
    latency_s: float = 20.0
    vendor_latency_ms: float = 20.0
    memory_n: int = 50_000
    memory_step: int = 10_000
    # ours in the throughput drains: the options of the one `axb worker` command ([]: the default)
    ours_argv: list[str] = field(default_factory=list)
    scale_processes: tuple[int, ...] = (1, 2, 4)
    scale_qps: int = 200  # AXB_RATE_LIMIT_QPS of the scaling runs (below what 2 cores can bind)
    scale_s: float = 10.0  # backlog = scale_qps × scale_s binds
    notes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # extra markdown tables (the scaling table)

    @classmethod
    def quick_config(cls) -> Config:
        return cls(
            quick=True,
            n=1000,
            rate_backlog=600,
            enqueue_rows=10_000,
            latency_s=6.0,
            memory_n=5000,
            memory_step=1000,
            scale_s=4.0,
        )
