"""The API's asyncio Redis client (for ``?wait``: pub/sub), built from the same settings as the
process runtime's client (:class:`worker.runtime.Runtime`).

COORDINATOR: when worker/connections.py (Sentinel support) lands, build this client there.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from worker.settings import Settings


def async_redis(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=5,
        socket_keepalive=True,
        health_check_interval=10,
        max_connections=max(64, settings.worker_concurrency * 4),
    )
