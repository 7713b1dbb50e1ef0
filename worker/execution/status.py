"""What on-call asks first: is the cluster holding its calls, and why; how full is Redis.

Read by ``axb status`` (worker/cli/status.py), ``axb dlq stats`` and the metrics collector
(worker/metrics.py), so that each shows the same thing.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from worker import keys
from worker.errors import RedisFullError
from worker.execution.hold import holds_in_force

log = logging.getLogger("axb.status")


def redis_memory(client: redis.Redis) -> dict[str, Any]:
    """``used_bytes``, ``max_bytes`` (0: no limit), ``policy`` and ``used_ratio`` (None without a limit)."""
    info = client.info("memory")
    used = int(info.get("used_memory", 0))
    limit = int(info.get("maxmemory", 0))
    return {
        "used_bytes": used,
        "max_bytes": limit,
        "policy": str(info.get("maxmemory_policy", "")),
        "used_ratio": round(used / limit, 4) if limit else None,
    }


def cluster_status(client: redis.Redis, account: str, queue: str) -> dict[str, Any]:
    pipe = client.pipeline(transaction=False)
    pipe.llen(queue)
    pipe.zcard(keys.delayed(queue))
    pipe.zcard(keys.held(queue))
    pipe.xlen(keys.DEAD_LETTERS)
    queued, delayed, held, dead = pipe.execute()
    return {
        "holds": [h.as_dict() for h in holds_in_force(client, account)],
        "queue": {
            "name": queue,
            "messages": int(queued),
            "delayed_keys": int(delayed),
            "held_keys": int(held),
        },
        "dead_letters": int(dead),
        "redis_memory": redis_memory(client),
    }


def describe_holds(holds: list[dict[str, Any]]) -> str:
    """One line per hold, or ``no hold: calls flow``."""
    if not holds:
        return "no hold: calls flow"
    lines = []
    for h in holds:
        detail = f"{h['code']}: {h['message']}" if h.get("message") else h.get("code", "")
        lines.append(f"HOLD ({h['scope']}): {h['reason']} since {h['since']} ({h['held_for_s']} s; {detail})")
    return "\n".join(lines)


def log_if_full(client: redis.Redis) -> bool:
    """Log one clear line when Redis is full (a worker starting: Celery's consumer then retries
    until memory is freed). True if it is."""
    try:
        mem = redis_memory(client)
    except redis.RedisError:
        return False  # Redis down: the broker's own retries say so
    full = bool(mem["max_bytes"]) and mem["used_bytes"] >= mem["max_bytes"] and mem["policy"] == "noeviction"
    if full:
        log.error("%s; the worker waits and takes messages once memory is freed", RedisFullError())
    return full
