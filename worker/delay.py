"""A delay queue of our own for retries and long rate-limit waits.

Celery countdowns park a message, unacknowledged, on one worker until it is due; with the
Redis broker that message is redelivered once the visibility timeout passes, so long
countdowns force a long visibility timeout, and a long visibility timeout makes a crashed
worker's binds wait that long. Instead, a due time goes into a sorted set; a pump thread in
every worker moves due keys back onto the Celery queue. Keys are claimed atomically (a key
moves to a "claimed" set until its message is published), so a pump that dies mid-way loses
nothing: stale claims go back to the delay set. A key published twice is harmless: the record
store lets one delivery work on a key at a time and never leaves a terminal state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import redis

from worker import keys
from worker.store import now_ms

log = logging.getLogger(__name__)

_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, k in ipairs(due) do
  redis.call('ZREM', KEYS[1], k)
  redis.call('ZADD', KEYS[2], now, k)
end
return due
"""

_RECOVER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
for _, k in ipairs(stale) do
  redis.call('ZREM', KEYS[2], k)
  redis.call('ZADD', KEYS[1], 'NX', now, k)
end
return #stale
"""


class DelayQueue:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._claim = client.register_script(_CLAIM)
        self._recover = client.register_script(_RECOVER)

    def schedule(self, key: str, due_ms: int) -> None:
        self.r.zadd(keys.DELAYED, {key: due_ms})

    def claim_due(self, limit: int = 500) -> list[str]:
        raw = self._claim(keys=[keys.DELAYED, keys.DELAYED_CLAIMED], args=[limit])
        return [k.decode() if isinstance(k, bytes) else str(k) for k in raw]

    def confirm(self, key_list: Sequence[str]) -> None:
        if key_list:
            self.r.zrem(keys.DELAYED_CLAIMED, *key_list)

    def recover_stale(self, older_than_ms: int = 30_000) -> int:
        return int(self._recover(keys=[keys.DELAYED, keys.DELAYED_CLAIMED], args=[older_than_ms]))

    def depth(self) -> int:
        return int(self.r.zcard(keys.DELAYED))

    def next_due_ms(self) -> int | None:
        first = self.r.zrange(keys.DELAYED, 0, 0, withscores=True)
        return int(first[0][1]) if first else None


class Pump:
    """Moves due keys from the delay queue to the Celery queue, in a daemon thread."""

    def __init__(
        self,
        queue: DelayQueue,
        publish: Callable[[Sequence[str]], None],
        *,
        idle_sleep_s: float = 0.05,
        batch: int = 500,
    ) -> None:
        self.queue = queue
        self.publish = publish
        self.idle_sleep_s = idle_sleep_s
        self.batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_recover = 0

    def run_once(self) -> int:
        ts = now_ms()
        if ts - self._last_recover > 5_000:
            self._last_recover = ts
            self.queue.recover_stale()
        due = self.queue.claim_due(self.batch)
        if due:
            self.publish(due)
            self.queue.confirm(due)
        return len(due)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                moved = self.run_once()
            except Exception:  # Redis down, broker down: claims are recovered, try again
                log.warning("delay pump: cycle failed; retrying", exc_info=True)
                self._stop.wait(1.0)
                continue
            if moved < self.batch:
                self._stop.wait(self.idle_sleep_s)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="axb-delay-pump", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
