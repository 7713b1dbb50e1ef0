"""The Redis client every part of this service uses, with redis-py's errors translated in one place.

A Redis that reached ``maxmemory`` under ``noeviction`` refuses every write (and every script
that may write) with ``OOM command not allowed…``. redis-py raises ``OutOfMemoryError`` from
wherever the command was sent; here it becomes :class:`worker.errors.RedisFullError` (still a
``redis.RedisError``), whose message says what happened and how to resume, for commands,
scripts and pipelines alike. The producer API raises it as is; the CLI prints it on one line
(:mod:`worker.cli.errors`); a worker waits and tries again (the task puts the message back).

Plain TCP connections keep their read and write timeouts in the kernel
(:class:`KernelTimeoutConnection`, :mod:`worker.socket_timeouts`), and every connection of a
process shares one :class:`~redis.driver_info.DriverInfo` (redis-py otherwise reads its own
package metadata from disk for each new connection).

Pipelines that run Lua scripts skip redis-py's ``SCRIPT EXISTS`` round trip (sent before every
such pipeline): a script the server does not know answers ``NOSCRIPT`` without running, and only
those commands are sent again once the scripts are loaded (:class:`AxbPipeline`).
"""

from __future__ import annotations

import functools
import socket
from typing import Any

import redis
from redis.client import Pipeline
from redis.connection import Connection
from redis.driver_info import DriverInfo
from redis.exceptions import NoScriptError

from worker.errors import RedisFullError
from worker.socket_timeouts import use_kernel_timeouts


@functools.cache
def shared_driver_info() -> DriverInfo:
    """The process's one ``DriverInfo``, built at the first client (building one reads redis-py's
    package metadata from disk, about 3 ms: not for every connection, nor at import)."""
    return DriverInfo()


def translated(exc: redis.RedisError) -> redis.RedisError:
    """The error to raise for ``exc``: :class:`RedisFullError` for a refusal by a full Redis.
    (Also for the one place that reads replies off a raw connection, the pipelined creates of
    :class:`worker.store.PendingCreates`.)"""
    if isinstance(exc, redis.exceptions.OutOfMemoryError) and not isinstance(exc, RedisFullError):
        full = RedisFullError(str(exc))
        full.__cause__ = exc
        return full
    return exc


class KernelTimeoutConnection(Connection):
    """redis-py's TCP connection, with ``socket_timeout`` kept by the kernel once connected: a
    command is one ``send`` and one ``recv``, not a ``poll`` before each. A read that times out
    fails as ``redis.ConnectionError`` ("Error while reading from socket: (11, ...)") instead of
    ``redis.TimeoutError``; both are retried (:func:`worker.connections.retry_policy`) and the
    connection is dropped either way. (``_connect`` is redis-py's hook for creating the socket.)"""

    def _connect(self) -> socket.socket:
        sock: socket.socket = super()._connect()  # type: ignore[no-untyped-call]
        if self.socket_timeout:
            use_kernel_timeouts(sock, self.socket_timeout, self.socket_timeout)
        return sock


class AxbPipeline(Pipeline):
    """redis-py's pipeline, with full-Redis errors translated and, outside transactions, no
    ``SCRIPT EXISTS`` round trip before the scripts run (one round trip per pipeline, not two).

    A script the server does not know (Redis restarted, failed over, or never saw it) answers
    ``NOSCRIPT`` and has not run: the pipeline's scripts are then loaded and the refused
    commands sent again, in their order, with every ``WAIT`` of the pipeline after them (a WAIT
    must follow the writes it covers). The other commands ran once, as pipelined commands do."""

    def _in_multi(self) -> bool:
        # (``transaction`` is an attribute here, set in __init__; the type stubs see a method)
        return bool(vars(self)["transaction"] or self.explicit_transaction)

    def load_scripts(self) -> None:
        if self._in_multi():
            super().load_scripts()  # type: ignore[no-untyped-call]  # inside MULTI: as redis-py does

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            if not self.scripts or self._in_multi():
                return super().execute(raise_on_error)
            stack, scripts = list(self.command_stack), list(self.scripts)
            replies = super().execute(raise_on_error=False)
            again = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if again:
                for script in scripts:  # (a script's sha is its text's: the same once loaded)
                    script.registered_client.script_load(script.script)
                waits = [i for i, (args, _) in enumerate(stack) if str(args[0]).upper() == "WAIT"]
                redo = again + [i for i in waits if i > again[0]]
                pipe = AxbPipeline(self.connection_pool, self.response_callbacks, False, None)
                for i in redo:
                    args, options = stack[i]
                    pipe.execute_command(*args, **options)  # type: ignore[no-untyped-call]
                for i, reply in zip(redo, pipe.execute(raise_on_error=False), strict=True):
                    replies[i] = reply
            if raise_on_error:
                self.raise_first_error(stack, replies)  # type: ignore[no-untyped-call]
            return replies
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
