"""What one worker (or producer) process holds: Redis, the store, the limiter, the vendor client.

Built lazily and once per process id, so prefork children never share a socket with their
parent.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from worker import keys
from worker.client import DyplsClient
from worker.delay import DelayQueue, Pump, Watchdog
from worker.limiter import Limit, RateLimiter
from worker.masking import mask_text
from worker.settings import Settings, get_settings
from worker.store import BindStore


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    store: BindStore
    delay: DelayQueue
    limiter: RateLimiter
    _client: DyplsClient | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=10,
            socket_connect_timeout=5,
            socket_keepalive=True,
            health_check_interval=10,
            retry_on_timeout=True,
            max_connections=max(64, settings.worker_concurrency * 4),
        )
        return cls(
            settings=settings,
            redis=client,
            store=BindStore(client, settings.queue, settings.watchdog_s),
            delay=DelayQueue(client, settings.queue),
            limiter=RateLimiter(client),
        )

    @property
    def client(self) -> DyplsClient:
        if self._client is None:
            self._client = DyplsClient(self.settings)
        return self._client

    def limits(self, pool: str) -> list[Limit]:
        s = self.settings
        out = [Limit(scope=f"account:{s.access_key_id}", rate_qps=s.rate_limit_qps, burst=s.rate_limit_burst)]
        pool_qps = s.pool_limits().get(pool)
        if pool_qps:
            out.append(Limit(scope=f"pool:{pool}", rate_qps=pool_qps, burst=1))
        return out

    def publish(self, key_list: Sequence[str], action: str | None = None) -> None:
        """Put one Celery message per key on the queue (task id derived from the key).

        Without ``action`` each key goes to the task its name calls for (``axb.bind``, or
        ``axb.unbind`` / ``axb.extend`` for lifecycle operations: :func:`keys.action_of`), so the
        delay queue and the watchdog publish every kind of record correctly."""
        from worker.celery_app import app

        with app.producer_or_acquire() as producer:
            for key in key_list:
                act = action or keys.action_of(key)
                app.send_task(
                    f"axb.{act}",
                    args=[key],
                    task_id=keys.task_id_for(key, act),
                    queue=self.settings.queue,
                    producer=producer,
                    argsrepr=mask_text(repr([key])),
                    kwargsrepr="{}",
                    retry=True,
                    retry_policy={
                        "max_retries": 20,
                        "interval_start": 0.2,
                        "interval_step": 0.5,
                        "interval_max": 3,
                    },
                )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.redis.close()


_lock = threading.Lock()
_runtime: tuple[int, Runtime] | None = None
_pump: Pump | None = None


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


def start_pump() -> Pump:
    global _pump
    rt = get_runtime()
    if _pump is None:
        # Sweep a few times per watch period, but not more than once a second; the lock lets
        # one pump of the cluster sweep a queue at a time.
        every_ms = int(min(5_000, max(1_000, rt.settings.watchdog_s * 250)))
        watchdog = Watchdog(
            rt.redis, rt.settings.queue, rt.settings.watchdog_s, rt.publish, lock_ms=int(every_ms * 0.9)
        )
        _pump = Pump(rt.delay, rt.publish, watchdog=watchdog, watchdog_every_ms=every_ms)
    _pump.start()
    return _pump


def stop_pump() -> None:
    global _pump
    if _pump is not None:
        _pump.stop()
        _pump = None
