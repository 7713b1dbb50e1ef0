"""Redis ``WAIT``: a write is on the replicas before we act on it.

Replication is asynchronous: a write the primary acknowledged but had not yet sent to a replica
is gone after a failover. Three writes carry promises, and each is followed by
``WAIT numreplicas timeout`` (``AXB_REDIS_WAIT_REPLICAS``, ``AXB_REDIS_WAIT_TIMEOUT_MS``):

- a producer's records and messages, before the producer call returns (``mark_published``,
  the call's last write: the replication stream is ordered, so WAIT after it covers the records
  and the messages written before it on other connections too);
- the signed request stored before a vendor call goes out (``begin_attempt``): lost, the next
  attempt would sign a new request instead of re-sending the stored one, and a bind whose
  first request reached the vendor would be bound twice;
- an outcome before its message is acknowledged (``succeed``, ``op_succeed``, ``dead_letter``,
  and a retry after a vendor answer): lost, a bind that succeeded would be re-sent, found
  ``SignatureNonceUsed`` and dead-lettered as ambiguous.

WAIT cannot run inside a Lua script, so it is pipelined right after the script's EVALSHA, on
the same connection (WAIT waits for that connection's writes): one round trip, as before.

When fewer replicas than asked acknowledge within the timeout (none in sync, or a slow one),
the write stands (it cannot be undone) and is only as safe as without WAIT; the shortfall is
counted (``axb_redis_wait_shortfalls_total``) and logged, and this process sends no WAIT for
the next :data:`PAUSE_S` seconds, so a replica outage does not slow every write by the timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ReadOnlyError

from worker.metrics import WAIT_SHORTFALLS
from worker.redis_client import translated

log = logging.getLogger(__name__)

PAUSE_S = 5.0


class ReplicaWait:
    """Where and how long to WAIT; ``replicas == 0`` turns it off."""

    def __init__(self, replicas: int = 0, timeout_ms: int = 1000, retry_s: float = 30.0) -> None:
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self.retry_s = retry_s
        self._paused_until = 0.0

    @property
    def active(self) -> bool:
        return self.replicas > 0 and time.monotonic() >= self._paused_until

    def queue(self, pipe: Any) -> bool:
        """Queue WAIT on ``pipe`` after its writes; True if queued (its reply is then the
        pipeline's last, for :meth:`check`)."""
        if not self.active:
            return False
        pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
        return True

    def check(self, acked: Any) -> None:
        """Note how many replicas acknowledged (WAIT's reply)."""
        if isinstance(acked, Exception):
            raise acked
        if int(acked) >= self.replicas:
            return
        WAIT_SHORTFALLS.inc()
        now = time.monotonic()
        was_paused, self._paused_until = now < self._paused_until, now + PAUSE_S
        if was_paused:  # other threads' WAITs of the same moment: logged once
            return
        log.warning(
            "redis WAIT: %d of %d replicas acknowledged within %d ms; this write may be lost in a "
            "failover; no WAIT for the next %.0f s",
            int(acked),
            self.replicas,
            self.timeout_ms,
            PAUSE_S,
        )

    def script(self, client: redis.Redis, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a registered script, then WAIT, in one round trip; the script's answer.

        Right after a failover a connection may reach the old primary, back as a replica (a
        sentinel that has not caught up named it): the script is refused there, or WAIT is.
        Then the idle connections are dropped (the next one asks the sentinels again) and the
        pair is sent again, for up to ``retry_s``, as redis-py retries a lost connection."""
        if not self.active:
            return script(keys=keys, args=args)
        deadline = time.monotonic() + self.retry_s
        pause_s = 0.1
        while True:
            pipe: Any = client.pipeline(transaction=False)
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
            res, acked = pipe.execute(raise_on_error=False)
            if isinstance(res, NoScriptError):  # Redis restarted or failed over: load it, again
                client.script_load(script.script)
            elif on_a_replica(res) or on_a_replica(acked):
                if time.monotonic() > deadline:
                    raise redis.ConnectionError("Redis answers as a replica: no primary to write to")
                client.connection_pool.disconnect(inuse_connections=False)
                time.sleep(pause_s)
                pause_s = min(1.0, pause_s * 2)
            elif isinstance(res, redis.RedisError):
                raise translated(res)
            elif isinstance(res, Exception):
                raise res
            else:
                self.check(acked)
                return res


def on_a_replica(reply: Any) -> bool:
    """A write or a WAIT refused because the server is a replica (a demoted primary)."""
    if isinstance(reply, ReadOnlyError):
        return True
    return isinstance(reply, redis.ResponseError) and (
        "cannot be used with replica" in str(reply) or "read only replica" in str(reply)
    )
