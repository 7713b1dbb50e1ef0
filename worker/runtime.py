"""The dependency container: what one worker (or producer) process holds.

Redis, the settings, the store, the delay queue, the limiter, the holds, the publisher
(:mod:`worker.queue`) and the vendor client. Built lazily and once per process id, so prefork
children never share a socket with their parent.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from worker.connections import redis_client, wait_replicas
from worker.execution import Holds
from worker.limiter import LATE_MIN_S, Limit, RateLimiter
from worker.queue import DelayQueue, Publisher
from worker.replication import ReplicaWait
from worker.settings import Settings, get_settings
from worker.store import BindStore
from worker.vendor import DyplsClient


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: BindStore
    delay: DelayQueue
    limiter: RateLimiter
    holds: Holds
    publisher: Publisher
    _client: DyplsClient | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        # One client for everything of this process, built where every Redis client is
        # (worker/connections.py: plain, TLS or Sentinel, retried through a failover).
        client = redis_client(settings, max_connections=max(64, settings.worker_concurrency * 4))
        wait = ReplicaWait(wait_replicas(settings), settings.redis_wait_timeout_ms, settings.redis_retry_s)
        return cls(
            settings=settings,
            redis=client,
            store=BindStore(client, settings.queue, settings.watchdog_s, wait),
            delay=DelayQueue(client, settings.queue),
            limiter=RateLimiter(client),
            holds=Holds(client, settings),
            publisher=Publisher(client, settings),
        )

    @property
    def client(self) -> DyplsClient:
        if self._client is None:
            self._client = DyplsClient(self.settings)
        return self._client

    @client.setter
    def client(self, client: DyplsClient) -> None:
        """Use ``client`` for this runtime's vendor calls from now on (for example one built with
        a custom httpx transport, or after changing timeouts in ``settings``)."""
        self._client = client

    def limits(self, pool: str) -> list[Limit]:
        s = self.settings
        # The account's burst pays for 10 ms of send lateness where it can (worker.limiter).
        out = [
            Limit(
                scope=f"account:{s.access_key_id}",
                rate_qps=s.rate_limit_qps,
                burst=s.rate_limit_burst,
                late_s=LATE_MIN_S,
            )
        ]
        pool_qps = s.pool_limits().get(pool)
        if pool_qps:
            out.append(Limit(scope=f"pool:{pool}", rate_qps=pool_qps, burst=1))
        return out

    def publish(self, key_list: Sequence[str], action: str | None = None, *, batch: bool = False) -> None:
        """Put one Celery message per key on the queue: :meth:`worker.queue.Publisher.publish`."""
        self.publisher.publish(key_list, action, batch=batch)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.redis.close()


_lock = threading.Lock()
_runtime: tuple[int, Runtime] | None = None


def get_runtime() -> Runtime:
    global _runtime
    pid = os.getpid()
    current = _runtime
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _runtime is None or _runtime[0] != pid:
            _runtime = (pid, Runtime.build(get_settings()))
        return _runtime[1]


def reset_runtime() -> None:
    """Forget the process runtime (tests re-point settings between runs)."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime[0] == os.getpid():
            _runtime[1].close()
        _runtime = None
