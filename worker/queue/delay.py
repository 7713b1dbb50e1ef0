"""A delay queue of our own for retries and long rate-limit waits.

Celery countdowns park a message, unacknowledged, on one worker until it is due; with the
Redis broker that message is redelivered once the visibility timeout passes, so long
countdowns force a long visibility timeout, and a long visibility timeout makes a crashed
worker's binds wait that long. Instead, a due time goes into a sorted set; a pump thread in
every worker moves due keys back onto the Celery queue. Keys are claimed atomically (a key
moves to a "claimed" set until its message is published), so a pump that dies mid-way loses
nothing: stale claims go back to the delay set. A key published twice is harmless: the record
store lets one delivery work on a key at a time and never leaves a terminal state.

The pump that moves due keys is :mod:`worker.queue.pump`; the watchdog under the broker is
:mod:`worker.queue.watchdog`.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from worker import keys, lua


class DelayQueue:
    def __init__(self, client: redis.Redis, queue: str = "axb.bind") -> None:
        self.r = client
        self.queue = queue
        self.key = keys.delayed(queue)
        self.claimed_key = keys.delayed_claimed(queue)
        self._claim = client.register_script(lua.source("delay_claim"))
        self._recover = client.register_script(lua.source("delay_recover"))

    def schedule(self, key: str, due_ms: int) -> None:
        self.r.zadd(self.key, {key: due_ms})

    def claim_due(self, limit: int = 500) -> list[str]:
        raw = self._claim(keys=[self.key, self.claimed_key], args=[limit])
        return [k.decode() if isinstance(k, bytes) else str(k) for k in raw]

    def confirm(self, key_list: Sequence[str]) -> None:
        if key_list:
            self.r.zrem(self.claimed_key, *key_list)

    def recover_stale(self, older_than_ms: int = 30_000) -> int:
        return int(self._recover(keys=[self.key, self.claimed_key], args=[older_than_ms]))

    def depth(self) -> int:
        return int(self.r.zcard(self.key))

    def next_due_ms(self) -> int | None:
        first = self.r.zrange(self.key, 0, 0, withscores=True)
        return int(first[0][1]) if first else None
