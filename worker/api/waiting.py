"""``GET /v1/binds/{key}?wait=SECONDS``: hold the request until the record is terminal, woken by
the outcome itself, never by a sleep loop.

Every script that makes a record terminal also PUBLISHes on ``keys.done_channel(key)``. A waiter
subscribes first and waits until Redis has *confirmed* the subscription, then reads the record,
then waits to be woken: an outcome written before the read is seen by the read, one written
after it is published to a subscription that already exists. So no outcome slips between them.

One :class:`DoneWatcher` per API process holds one pub/sub connection for all its waiters
(a channel is subscribed while someone waits on it), so a thousand long polls cost one Redis
connection, not a thousand. If that connection breaks, redis-py resubscribes when it reconnects,
and every waiter reads its record again then (a publish may have been missed meanwhile); a read
that fails while Redis is away keeps the request waiting rather than failing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis

from worker import keys

log = logging.getLogger("axb.api")

MAX_WAIT_S = 30.0
RECONNECT_PAUSE_S = 0.5
_D = TypeVar("_D")


class DoneWatcher:
    """Wakes waiters when their record's done channel gets a message."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._pubsub = client.pubsub()
        self._waiters: dict[bytes, set[asyncio.Event]] = {}
        self._sent: Counter[bytes] = Counter()  # SUBSCRIBEs sent, per channel
        self._confirmed: Counter[bytes] = Counter()  # their confirmations read back, in order
        self._changed = asyncio.Condition()
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watch(self, key: str, deadline: float) -> AsyncIterator[asyncio.Event]:
        """An event set when ``key``'s outcome is published; entered once the subscription is live
        (or ``deadline``, a ``time.monotonic()`` value, has passed)."""
        channel = keys.done_channel(key).encode()
        event = asyncio.Event()
        async with self._lock:
            waiters = self._waiters.setdefault(channel, set())
            waiters.add(event)
            if len(waiters) == 1:
                # Counted before sending: the reader may read the confirmation before
                # subscribe() returns here.
                self._sent[channel] += 1
                try:
                    await self._pubsub.subscribe(channel)
                except BaseException:
                    self._sent[channel] -= 1
                    self._forget(channel, event)
                    raise
            target = self._sent[channel]
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="axb-done-watcher")
        try:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._confirmed[channel] >= target),
                        max(0.0, deadline - time.monotonic()),
                    )
            yield event
        finally:
            async with self._lock:
                if self._forget(channel, event):
                    with contextlib.suppress(redis.RedisError):
                        await self._pubsub.unsubscribe(channel)

    def _forget(self, channel: bytes, event: asyncio.Event) -> bool:
        """Drop a waiter; True when it was the channel's last one."""
        waiters = self._waiters.get(channel, set())
        waiters.discard(event)
        if waiters:
            return False
        self._waiters.pop(channel, None)
        return True

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken connection: wake everyone, then reconnect
                log.warning(
                    "done-channel connection lost (%s); waiters re-read their records", type(exc).__name__
                )
                self._wake_all()
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            if message is not None:
                await self._dispatch(message)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if not isinstance(channel, bytes):
            return
        if message["type"] == "subscribe":
            # Also after a reconnect's resubscription: an outcome may have been published while
            # the connection was down, so the channel's waiters read their records again.
            for event in self._waiters.get(channel, ()):
                event.set()
            async with self._changed:
                # Capped: the resubscriptions of a reconnect confirm again, and must not count
                # for a SUBSCRIBE sent later.
                self._confirmed[channel] = min(self._confirmed[channel] + 1, self._sent[channel])
                self._changed.notify_all()
        elif message["type"] == "message":
            for event in self._waiters.get(channel, ()):
                event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


async def read_when_done(
    watcher: DoneWatcher,
    key: str,
    wait_s: float,
    load: Callable[[], Awaitable[_D | None]],
    done: Callable[[_D], bool],
) -> _D | None:
    """``load()`` once the record is terminal, or when ``wait_s`` is up (whatever it then is);
    None if there is no such record."""
    if wait_s <= 0:
        return await load()
    deadline = time.monotonic() + min(wait_s, MAX_WAIT_S)
    async with watcher.watch(key, deadline) as woken:
        woken.clear()
        found = await load()
        while found is not None and not done(found):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), left)
            woken.clear()
            try:
                found = await load()
            except redis.RedisError:
                # Redis is away: keep the last read; the watcher wakes us again once it is back.
                continue
        return found
