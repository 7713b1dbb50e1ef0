"""Prometheus metrics; each worker serves ``/metrics`` on ``AXB_METRICS_PORT``.

Counters and histograms are recorded where things happen (the pipeline); queue depth and the
dead-letter gauges are read from Redis when scraped, so every worker reports the same truth.
With the prefork pool, set ``PROMETHEUS_MULTIPROC_DIR`` and the values of all children are
aggregated (prometheus-client's multi-process mode).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from worker import keys

log = logging.getLogger(__name__)

BINDS = Counter("axb_binds_total", "Binds that reached an outcome", ["outcome", "code"])
LIFECYCLE = Counter(
    "axb_lifecycle_total", "Unbinds and extends that reached an outcome", ["action", "outcome", "code"]
)
RETRIES = Counter("axb_retries_total", "Bind attempts scheduled for a retry", ["code"])
VENDOR_LATENCY = Histogram(
    "axb_vendor_call_seconds",
    "Vendor call latency",
    ["action", "outcome"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
REPUBLISHED = Counter(
    "axb_watchdog_republished_total", "Keys the watchdog found with no message anywhere and published again"
)
DEAD_LETTERS_EXPIRED = Counter(
    "axb_dead_letters_expired_total",
    "Dead letters removed by the retention sweep (AXB_DLQ_RETENTION_DAYS), each with an audit record",
)
WAIT_SHORTFALLS = Counter(
    "axb_redis_wait_shortfalls_total",
    "Redis WAITs answered by fewer replicas than AXB_REDIS_WAIT_REPLICAS (worker/replication.py)",
)
LIMITER_WAIT = Histogram(
    "axb_rate_limiter_wait_seconds",
    "Time a call waited for the cluster-wide rate limiter",
    buckets=(0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
CALLBACKS = Counter(
    "axb_callbacks_total",
    "Completion callback delivery attempts by outcome (delivered, retrying, dead_lettered, superseded)",
    ["outcome"],
)
CALLBACK_LATENCY = Histogram(
    "axb_callback_post_seconds",
    "Latency of one callback POST",
    ["outcome"],
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
CALLBACK_LAG = Histogram(
    "axb_callback_delivery_seconds",
    "From the record's terminal write to the receiver's 2xx (retries included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 3600, 86400),
)


class RedisCollector(Collector):
    """Gauges read from Redis at scrape time: queue depth, delay queue, dead letters, the holds
    in force (worker/execution/hold.py) and Redis memory."""

    def __init__(self, client: Any, queue: str, account: str = "") -> None:
        self.client = client
        self.queue = queue
        self.account = account

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.queue)
            pipe.zcard(keys.delayed(self.queue))
            pipe.xlen(keys.DEAD_LETTERS)
            pipe.xrange(keys.DEAD_LETTERS, count=1)
            queued, delayed, depth, first = pipe.execute()
        except Exception:  # Redis down: report nothing rather than fail the scrape
            log.debug("metrics: Redis unavailable", exc_info=True)
            return
        q = GaugeMetricFamily(
            "axb_queue_depth",
            "Messages waiting (a bulk message carries up to AXB_BATCH_SIZE binds)",
            labels=["queue"],
        )
        q.add_metric([self.queue], queued)
        q.add_metric(["delayed"], delayed)
        yield q
        yield GaugeMetricFamily("axb_dead_letters", "Entries in the dead-letter stream", value=depth)
        age = 0.0
        if first:
            eid = first[0][0]
            eid = eid.decode() if isinstance(eid, bytes) else str(eid)
            age = max(0.0, time.time() - int(eid.split("-", 1)[0]) / 1000)
        yield GaugeMetricFamily(
            "axb_dead_letter_oldest_age_seconds", "Age of the oldest dead letter", value=age
        )
        yield from self._holds_and_memory()

    def _holds_and_memory(self) -> Iterator[GaugeMetricFamily]:
        from worker.execution import holds_in_force, redis_memory

        try:
            holds = holds_in_force(self.client, self.account)
            held = self.client.zcard(keys.held(self.queue))
            memory = redis_memory(self.client)
        except Exception:
            log.debug("metrics: Redis unavailable", exc_info=True)
            return
        on = GaugeMetricFamily(
            "axb_hold",
            "1 while the cluster holds its vendor calls (scope account or vendor; reason, code)",
            labels=["scope", "reason", "code"],
        )
        since = GaugeMetricFamily(
            "axb_hold_started_timestamp_seconds",
            "When the hold in force started (Unix time)",
            labels=["scope", "reason"],
        )
        for h in holds:
            on.add_metric([h.scope, h.reason, h.code], 1)
            since.add_metric([h.scope, h.reason], h.since_ms / 1000)
        yield on
        yield since
        g = GaugeMetricFamily("axb_held_keys", "Keys waiting out the vendor hold", labels=["queue"])
        g.add_metric([self.queue], held)
        yield g
        yield GaugeMetricFamily(
            "axb_redis_memory_used_bytes", "Redis used_memory", value=memory["used_bytes"]
        )
        yield GaugeMetricFamily(
            "axb_redis_memory_max_bytes", "Redis maxmemory (0: no limit)", value=memory["max_bytes"]
        )


_started: dict[str, Any] = {}


def start_metrics_server(port: int, client: Any, queue: str, account: str = "") -> CollectorRegistry:
    """Serve /metrics on ``port`` (once per process)."""
    if "registry" in _started:
        registry: CollectorRegistry = _started["registry"]
        return registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    registry.register(RedisCollector(client, queue, account))
    start_http_server(port, registry=registry)
    _started["registry"] = registry
    log.info("metrics on :%d/metrics", port)
    return registry
