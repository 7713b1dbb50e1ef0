"""A delay queue of our own for retries and long rate-limit waits.

Celery countdowns park a message, unacknowledged, on one worker until it is due; with the
Redis broker that message is redelivered once the visibility timeout passes, so long
countdowns force a long visibility timeout, and a long visibility timeout makes a crashed
worker's binds wait that long. Instead, a due time goes into a sorted set; a pump thread in
every worker moves due keys back onto the Celery queue. Keys are claimed atomically (a key
moves to a "claimed" set until its message is published), so a pump that dies mid-way loses
nothing: stale claims go back to the delay set. A key published twice is harmless: the record
store lets one delivery work on a key at a time and never leaves a terminal state.

The same pump runs the watchdog (:class:`Watchdog`): the safety net under the broker. Kombu's
Redis transport pops a message and records it as unacknowledged in two steps; a worker killed
between them loses that message, and a producer that dies between writing a record and
publishing leaves a record with no message. Every accepted key is therefore watched until it
finishes, and one with no message anywhere is published again.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence

import redis

from worker import keys, lua
from worker.errors import RedisFullError
from worker.redis_text import as_text as _str
from worker.store import now_ms

log = logging.getLogger(__name__)


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


# Task ids in a kombu message (list entry or unacked entry), read from the headers (the body is
# base64): the message's own "id", and for a many-key message the members' ids in its
# "axb_task_ids" header. Every UUID in the message is taken (correlation id and delivery tag
# too: harmless extra members of the set).
_TASK_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# kombu's Redis transport: priority sub-queues and the unacknowledged-message hash.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_UNACKED = "unacked"


class Watchdog:
    """Publishes again any watched key that has no message anywhere.

    A key is overdue once ``watch_s`` has passed since it was accepted or last seen alive. For
    each overdue key: finished (or gone) → unwatched; leased, delayed or claimed → alive; its
    task id in the queue's lists or in the unacknowledged hash → alive; otherwise its message
    was lost → published again (a duplicate message is harmless: one delivery holds the lease,
    and a terminal record is never worked on again). When the backlog is too long to scan, an
    overdue key is assumed queued and looked at again later.
    """

    def __init__(
        self,
        client: redis.Redis,
        queue: str,
        watch_s: float,
        publish: Callable[[Sequence[str]], None],
        *,
        scan_max: int = 20_000,
        lock_ms: int = 900,
    ) -> None:
        self.r = client
        self.queue = queue
        self.watch_ms = int(watch_s * 1000)
        self.publish = publish
        self.scan_max = scan_max
        self.lock_ms = lock_ms
        self.watch_key = keys.watch(queue)
        self.delayed_key = keys.delayed(queue)
        self.claimed_key = keys.delayed_claimed(queue)

    def _queued_task_ids(self) -> set[bytes] | None:
        """Task ids on the queue or unacknowledged; None when there are too many to scan."""
        lists = [self.queue + suffix for suffix in _PRIORITY_SUFFIXES]
        pipe = self.r.pipeline(transaction=False)
        for name in lists:
            pipe.llen(name)
        pipe.hlen(_UNACKED)
        sizes = pipe.execute()
        if sum(int(n) for n in sizes) > self.scan_max:
            return None
        pipe = self.r.pipeline(transaction=False)
        for name, size in zip(lists, sizes, strict=False):
            if size:
                pipe.lrange(name, 0, -1)
        pipe.hvals(_UNACKED)
        found: set[bytes] = set()
        for chunk in pipe.execute():
            for raw in chunk:
                found.update(_TASK_ID.findall(raw if isinstance(raw, bytes) else str(raw).encode()))
        return found

    def sweep(self, limit: int = 500) -> int:
        """One pass over overdue keys; returns how many were published again."""
        if not self.r.set(keys.watchdog_lock(self.queue), os.getpid(), nx=True, px=self.lock_ms):
            return 0  # another worker's pump is sweeping this queue
        now = now_ms()
        overdue = [_str(k) for k in self.r.zrangebyscore(self.watch_key, "-inf", now, start=0, num=limit)]
        if not overdue:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for key in overdue:
            pipe.hmget(keys.bind_record(key), "status", "task_id")
            pipe.exists(keys.bind_lease(key))
            pipe.zscore(self.delayed_key, key)
            pipe.zscore(self.claimed_key, key)
        res = pipe.execute()
        finished: list[str] = []
        alive: list[str] = []
        suspects: list[tuple[str, bytes]] = []
        for i, key in enumerate(overdue):
            (status, task_id), leased, delayed, claimed = res[4 * i : 4 * i + 4]
            status = _str(status) if status is not None else None
            if status is None or status in ("succeeded", "dead_lettered", "cancelled"):
                finished.append(key)
            elif leased or delayed is not None or claimed is not None:
                alive.append(key)
            else:
                tid = (
                    task_id
                    if isinstance(task_id, bytes)
                    else keys.task_id_for(key, keys.action_of(key)).encode()
                )
                suspects.append((key, tid))
        lost: list[str] = []
        if suspects:
            queued = self._queued_task_ids()
            for key, tid in suspects:
                if queued is None or tid in queued:
                    alive.append(key)
                else:
                    lost.append(key)
        if lost:
            self.publish(lost)
            log.warning(
                "watchdog: %d key(s) had no message on %s (lost between broker and worker, or "
                "never published); published again: %s",
                len(lost),
                self.queue,
                ", ".join(lost[:10]) + (" …" if len(lost) > 10 else ""),
            )
            from worker.metrics import REPUBLISHED

            REPUBLISHED.inc(len(lost))
        pipe = self.r.pipeline(transaction=False)
        if finished:
            pipe.zrem(self.watch_key, *finished)
        again = alive + lost
        if again:
            # XX: a key that finished meanwhile (and was unwatched) is not watched again.
            pipe.zadd(self.watch_key, dict.fromkeys(again, now + self.watch_ms), xx=True)
        pipe.execute()
        return len(lost)


class Pump:
    """Moves due keys from the delay queue to the Celery queue, in a daemon thread.

    It polls every ``idle_sleep_s``; with ``wake_key`` a second thread blocks on that list
    (:func:`keys.delay_wake`) and wakes the pump at once for an entry due now (a completion
    callback). A lost token only costs the poll interval: the entry is in the delay set."""

    def __init__(
        self,
        queue: DelayQueue,
        publish: Callable[[Sequence[str]], None],
        *,
        idle_sleep_s: float = 0.05,
        batch: int = 500,
        watchdog: Watchdog | None = None,
        watchdog_every_ms: int = 5_000,
        wake_key: str | None = None,
        retention: Callable[[], int] | None = None,
        retention_every_ms: int = 60_000,
    ) -> None:
        self.queue = queue
        self.publish = publish
        self.watchdog = watchdog
        self.watchdog_every_ms = watchdog_every_ms
        self._last_watch = 0
        # The dead-letter retention sweep (worker.retention): its own lock makes one pump of the
        # cluster sweep per period; a failure is logged and never stops the delay queue.
        self.retention = retention
        self.retention_every_ms = retention_every_ms
        self._last_retention = 0
        self.idle_sleep_s = idle_sleep_s
        self.batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_recover = 0
        self.wake_key = wake_key
        self._wake = threading.Event()
        self._waker: threading.Thread | None = None

    def run_once(self) -> int:
        ts = now_ms()
        if ts - self._last_recover > 5_000:
            self._last_recover = ts
            self.queue.recover_stale()
        if self.watchdog is not None and ts - self._last_watch > self.watchdog_every_ms:
            self._last_watch = ts
            self.watchdog.sweep()
        if self.retention is not None and ts - self._last_retention > self.retention_every_ms:
            self._last_retention = ts
            try:
                self.retention()
            except Exception:
                log.warning("dead-letter retention sweep failed; tried again next period", exc_info=True)
        due = self.queue.claim_due(self.batch)
        if due:
            self.publish(due)
            self.queue.confirm(due)
        return len(due)

    def _loop(self) -> None:
        full_logged = 0.0
        while not self._stop.is_set():
            try:
                moved = self.run_once()
            except RedisFullError as err:  # nothing was written: wait for memory to be freed
                if time.monotonic() - full_logged > 30:
                    full_logged = time.monotonic()
                    log.error("delay pump: %s; the worker waits and tries again every second", err)
                self._stop.wait(1.0)
                continue
            except Exception:  # Redis down, broker down: claims are recovered, try again
                log.warning("delay pump: cycle failed; retrying", exc_info=True)
                self._stop.wait(1.0)
                continue
            if moved < self.batch:
                self._wake.wait(self.idle_sleep_s)
                self._wake.clear()

    def _wait_for_wake(self) -> None:
        """Block on the wake list (one connection of the pool) and wake the pump per token."""
        assert self.wake_key is not None
        while not self._stop.is_set():
            try:
                if self.queue.r.blpop([self.wake_key], timeout=1):
                    self._wake.set()
            except Exception:  # Redis down: the pump's own polling goes on meanwhile
                log.debug("delay pump: wake-up list unavailable; retrying", exc_info=True)
                self._stop.wait(1.0)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="axb-delay-pump", daemon=True)
            self._thread.start()
        if self.wake_key and (self._waker is None or not self._waker.is_alive()):
            self._waker = threading.Thread(target=self._wait_for_wake, name="axb-delay-wake", daemon=True)
            self._waker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
