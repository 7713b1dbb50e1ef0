"""The Redis client every part of this service uses, with redis-py's errors translated in one place.

A Redis that reached ``maxmemory`` under ``noeviction`` refuses every write (and every script
that may write) with ``OOM command not allowed…``. redis-py raises ``OutOfMemoryError`` from
wherever the command was sent; here it becomes :class:`worker.errors.RedisFullError` (still a
``redis.RedisError``), whose message says what happened and how to resume, for commands,
scripts and pipelines alike. The producer API raises it as is; the CLI prints it on one line
(:mod:`worker.cli.errors`); a worker waits and tries again (the task puts the message back).
"""

from __future__ import annotations

from typing import Any

import redis
from redis.client import Pipeline

from worker.errors import RedisFullError


def translated(exc: redis.RedisError) -> redis.RedisError:
    """The error to raise for ``exc``: :class:`RedisFullError` for a refusal by a full Redis.
    (Also for the one place that reads replies off a raw connection, the pipelined creates of
    :class:`worker.store.PendingCreates`.)"""
    if isinstance(exc, redis.exceptions.OutOfMemoryError) and not isinstance(exc, RedisFullError):
        full = RedisFullError(str(exc))
        full.__cause__ = exc
        return full
    return exc


class AxbPipeline(Pipeline):
    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return super().execute(raise_on_error)
        except redis.exceptions.OutOfMemoryError as exc:
            raise translated(exc) from exc


class AxbRedis(redis.Redis):
    def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except redis.exceptions.OutOfMemoryError as exc:
            raise translated(exc) from exc

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> AxbPipeline:
        return AxbPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
