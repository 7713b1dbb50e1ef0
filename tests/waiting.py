"""Waiting in tests: poll for a condition instead of sleeping a fixed time.

Rules of this suite (see the README's test notes):

- Never ``time.sleep(x)`` and then assert: on a slow machine the thing has not happened yet,
  on a fast one the test waited for nothing. Wait for the condition with :func:`wait_until`.
- Never sleep and then assert that something did NOT happen. Wait instead for a positive fact
  that proves the absence: a counter, a later event that can only come after it (a barrier),
  or a state from which it can no longer happen (:func:`queue_settled`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import httpx
import redis

from worker import keys

if TYPE_CHECKING:
    from worker.producer import BindResult
    from worker.runtime import Runtime

T = TypeVar("T")

KOMBU_UNACKED = "unacked"  # kombu's Redis transport: messages delivered and not yet acked


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value, and return
    that value. Raises AssertionError (the test fails) if it is still falsy after ``timeout``
    seconds; the predicate is always tried once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def queue_settled(rt: Runtime) -> bool:
    """True when nothing of ``rt``'s queue is left to deliver: no message on the queue or being
    worked on (kombu keeps a message in its ``unacked`` hash until its task returns: the workers
    ack late), none in the delay queue (scheduled or claimed by the pump), and no key watched
    (every key created on it has had its terminal write). From this state no further vendor call
    can come for its keys, so a test can assert an absence after
    ``wait_until(lambda: queue_settled(rt))``."""
    q = rt.settings.queue
    pipe = rt.redis.pipeline(transaction=False)
    pipe.llen(q)
    pipe.zcard(keys.delayed(q))
    pipe.exists(keys.delayed_claimed(q))
    pipe.zcard(keys.watch(q))
    pipe.hvals(KOMBU_UNACKED)
    *counts, unacked = pipe.execute()
    return not any(counts) and not any(_unacked_queue(raw) == q for raw in unacked)


def _unacked_queue(raw: bytes) -> str | None:
    """The queue (routing key) of one entry of kombu's unacked hash: ``[message, exchange, queue]``."""
    try:
        entry = json.loads(raw)
        return str(entry[2])
    except (ValueError, IndexError, TypeError, KeyError):
        return None


def finished_result(key: str) -> BindResult | None:
    """The bind result of ``key`` once it is done (succeeded, dead-lettered or cancelled), else
    None: ``wait_until(lambda: finished_result(key))`` waits for it and returns it."""
    from worker.producer import get_result

    result = get_result(key)
    return result if result is not None and result.done else None


def watch_overdue(client: redis.Redis, queue: str) -> bool:
    """True when ``queue`` has watched keys and every one of them is overdue, so the watchdog's
    next sweep looks at all of them (the readiness wait before a test calls ``sweep()``)."""
    scores = [score for _, score in client.zrange(keys.watch(queue), 0, -1, withscores=True)]
    return bool(scores) and max(scores) < time.time() * 1000


def http_serving(client: httpx.Client, url: str, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether ``url`` answers a GET with 200. While it does not, the server process ``proc`` must
    still be running: a server that died fails the wait at once instead of at its timeout."""
    try:
        if client.get(url).status_code == 200:
            return True
    except httpx.TransportError:
        pass
    assert proc is None or proc.poll() is None, f"the server for {url} exited ({proc.returncode})"
    return False


def redis_answers(client: redis.Redis, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether the Redis server of ``client`` answers a PING. While it does not, its process
    ``proc`` must still be running (a server that died fails the wait at once)."""
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        assert proc is None or proc.poll() is None, f"redis-server exited ({proc.returncode})"
        return False
