"""The watchdog: the safety net under the broker, run by every worker's delay pump.

Kombu's Redis transport pops a message and records it as unacknowledged in two steps; a worker killed
between them loses that message, and a producer that dies between writing a record and
publishing leaves a record with no message. Every accepted key is therefore watched until it
finishes, and one with no message anywhere is published again. The delay pump
(:class:`worker.queue.pump.Pump`) sweeps it a few times per watch period.

Logs go to the ``worker.delay`` logger, as they always did.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence

import redis

from worker import keys
from worker.redis_text import as_text

log = logging.getLogger("worker.delay")


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
        now = int(time.time() * 1000)
        overdue = [as_text(k) for k in self.r.zrangebyscore(self.watch_key, "-inf", now, start=0, num=limit)]
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
            status = as_text(status) if status is not None else None
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
