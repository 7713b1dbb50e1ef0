"""``GET /v1/binds/{key}?wait=SECONDS``: hold the request until the record is terminal, woken by
the outcome itself, never by a sleep loop.

Every script that makes a record terminal also PUBLISHes on ``keys.done_channel(key)``. A waiter
subscribes first (and waits for Redis to confirm the subscription), *then* reads the record, then
waits on the channel: an outcome written before the read is seen by the read, one written after
it is published to a subscription that already exists. So no outcome can slip between the two.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis

from worker import keys

MAX_WAIT_S = 30.0
_D = TypeVar("_D")


async def read_when_done(
    client: aioredis.Redis,
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
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(keys.done_channel(key))
        while (left := deadline - time.monotonic()) > 0:
            message = await pubsub.get_message(timeout=left)
            if message is not None and message["type"] == "subscribe":
                break
        found = await load()
        if found is None or done(found):
            return found
        while (left := deadline - time.monotonic()) > 0:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None and message["type"] == "message":
                break
        return await load()
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
