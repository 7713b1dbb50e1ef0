"""What one worker (or producer) process holds: Redis, the store, the limiter, the vendor client.

Built lazily and once per process id, so prefork children never share a socket with their
parent.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from worker import keys
from worker.connections import redis_client, wait_replicas
from worker.delay import DelayQueue, Pump, Watchdog
from worker.hold import Holds
from worker.limiter import LATE_MIN_S, Limit, RateLimiter
from worker.masking import mask_text
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
        """Put one Celery message per key on the queue (task id derived from the key).

        Without ``action`` each key goes to the task its name calls for (``axb.bind``, or
        ``axb.unbind`` / ``axb.extend`` for lifecycle operations: :func:`keys.action_of`), so the
        delay queue and the watchdog publish every kind of record correctly.

        Messages are written the way kombu's Redis transport writes them (protocol 2 task
        messages, ``LPUSH`` onto the queue's list) but many per pipelined round trip: kombu
        builds a Redis client and a producer per ``send_task``, which capped bulk enqueues at
        about 900 messages a second. A failed round trip is retried whole; a message pushed
        twice is harmless (one delivery holds the lease; a finished key is never worked again).

        ``batch``: bind keys go up to ``AXB_BATCH_SIZE`` per message (task ``axb.bind_many``),
        which takes the engine's per-message cost off each bind; lifecycle operations still go
        one per message. The member keys' task ids travel in the message's ``axb_task_ids``
        header, where the watchdog looks for them.
        """
        size = self.settings.batch_size
        grouping = batch and size > 1 and action in (None, "bind")
        binds: list[str] = []
        singles: list[str] = []
        for k in key_list:
            (binds if grouping and keys.action_of(k) == "bind" else singles).append(k)
        messages = [
            self._message(group[0], "bind") if len(group) == 1 else self._batch_message(group)
            for group in (binds[i : i + size] for i in range(0, len(binds), size))
        ]
        messages.extend(self._message(k, action or keys.action_of(k)) for k in singles)
        for i in range(0, len(messages), 2000):
            self._push(messages[i : i + 2000])

    def _push(self, messages: list[str]) -> None:
        delay = 0.2
        for attempt in range(20):
            try:
                pipe = self.redis.pipeline(transaction=False)
                for m in messages:
                    pipe.lpush(self.settings.queue, m)
                pipe.execute()
                return
            except (redis.ConnectionError, redis.TimeoutError):
                if attempt == 19:
                    raise
                time.sleep(delay)
                delay = min(3.0, delay + 0.5)

    def _message(self, key: str, action: str) -> str:
        return self._envelope(f"axb.{action}", keys.task_id_for(key, action), [key])

    def _batch_message(self, key_list: Sequence[str]) -> str:
        group = list(key_list)
        ids = [keys.task_id_for(k, "bind") for k in group]
        return self._envelope("axb.bind_many", str(uuid.uuid4()), [group], extra={"axb_task_ids": ids})

    def _envelope(self, task: str, tid: str, argv: list[Any], extra: dict[str, Any] | None = None) -> str:
        args = json.dumps([argv, {}, _EMBED])
        argsrepr = mask_text(repr(argv))
        if len(argsrepr) > 1000:
            argsrepr = argsrepr[:1000] + "…"
        return json.dumps(
            {
                "body": base64.b64encode(args.encode()).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": {
                    "lang": "py",
                    "task": task,
                    "id": tid,
                    "shadow": None,
                    "eta": None,
                    "expires": None,
                    "group": None,
                    "group_index": None,
                    "retries": 0,
                    "timelimit": [None, None],
                    "root_id": tid,
                    "parent_id": None,
                    "argsrepr": argsrepr,
                    "kwargsrepr": "{}",
                    "origin": _ORIGIN,
                    "ignore_result": True,
                    "replaced_task_nesting": 0,
                    "stamped_headers": None,
                    "stamps": {},
                    **(extra or {}),
                },
                "properties": {
                    "correlation_id": tid,
                    "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": self.settings.queue},
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.redis.close()


# Celery task message protocol 2: the body is (args, kwargs, embed).
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"

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

        def publish(key_list: Sequence[str]) -> None:
            rt.publish(key_list, batch=True)

        watchdog = Watchdog(
            rt.redis, rt.settings.queue, rt.settings.watchdog_s, publish, lock_ms=int(every_ms * 0.9)
        )
        from worker.retention import Retention

        retention = Retention(
            rt.redis, rt.settings.dlq_retention_days, every_s=rt.settings.dlq_retention_sweep_s
        )
        _pump = Pump(
            rt.delay,
            publish,
            watchdog=watchdog,
            watchdog_every_ms=every_ms,
            wake_key=keys.delay_wake(rt.settings.queue),
            retention=retention.sweep,
            retention_every_ms=int(rt.settings.dlq_retention_sweep_s * 1000),
        )
    _pump.start()
    return _pump


def stop_pump() -> None:
    global _pump
    if _pump is not None:
        _pump.stop()
        _pump = None
