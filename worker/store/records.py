"""The records of the store: statuses, the decoded record hash (:class:`BindRecord`), the clock.

A record is one Redis hash per idempotency key: a bind's, or a lifecycle operation's (unbind,
extend: ``unbind:<key>`` / ``extend:<key>:<expiration>``) or a completion callback's delivery
(``callback:<key>@<ms>``). All share these statuses, written by the scripts of ``lua/`` through
``statuses.lua`` (which names the same strings as :class:`Status`; a test checks the two agree).
Every time on a record is in milliseconds since the epoch, and its Python name says so
(``deadline_ms``, ``expires_at_ms``, ``created_at_ms``, ...); the hash fields keep their stored
names (``deadline``, ``expires_at``, ``created_at``), so records written before read the same.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.redis_text import as_text
from worker.sealing import unseal


class Status(StrEnum):
    """A record's status. ``cancelled`` is a status; its code is ``errors.CANCELLED``."""

    PENDING = "pending"  # accepted, not yet tried
    RETRYING = "retrying"  # tried, will be tried again
    SUCCEEDED = "succeeded"  # done: a SecretBindDTO (or the operation's result) is stored
    DEAD_LETTERED = "dead_lettered"  # given up: see the dead-letter stream
    CANCELLED = "cancelled"  # an unbind came before any request of the bind could have bound


PENDING = Status.PENDING
RETRYING = Status.RETRYING
SUCCEEDED = Status.SUCCEEDED
DEAD_LETTERED = Status.DEAD_LETTERED
CANCELLED = Status.CANCELLED
# Final: no script moves a record out of these (a dead-letter replay is an explicit operation).
TERMINAL = frozenset({SUCCEEDED, DEAD_LETTERED, CANCELLED})


def now_ms() -> int:
    """The wall clock in milliseconds, as records store times."""
    return int(time.time() * 1000)


@dataclass
class BindRecord:
    """A decoded record hash."""

    key: str
    status: str
    task_id: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    pool: str = ""
    action: str = "bind"
    attempts: int = 0
    throttles: int = 0
    # attempts that failed on the vendor's side (unreachable, 5xx): not counted against AXB_MAX_ATTEMPTS
    outages: int = 0
    code: str = ""
    message: str = ""
    request_id: str = ""
    http_status: int | None = None
    result: dict[str, Any] | None = None
    inflight: dict[str, Any] | None = None
    inflight_at_ms: int | None = None
    created_at_ms: int = 0
    updated_at_ms: int = 0
    deadline_ms: int = 0
    expires_at_ms: int = 0
    first_attempt_at_ms: int | None = None
    last_attempt_at_ms: int | None = None
    succeeded_at_ms: int | None = None
    dead_lettered_at_ms: int | None = None
    next_at_ms: int | None = None
    dlq_id: str = ""
    published: bool = False
    starts: int = 0
    # lifecycle: on bind records
    cancel_requested: str = ""
    cancelled_at_ms: int | None = None
    unbound_at_ms: int | None = None
    unbind_key: str = ""
    expiration: str = ""
    extended_at_ms: int | None = None
    extend_seq: int = 0
    # lifecycle: on operation records (the bind they act on, the order of extends)
    target: str = ""
    seq: int = 0
    # completion callback (worker.callbacks), set at creation
    callback_url: str = ""
    callback_numbers: bool = False
    # A first copy of this bind may have left a binding at the vendor (worker.orphans)
    possible_orphan: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_reply(cls, data: dict[Any, Any]) -> BindRecord:
        """A record from an HGETALL reply (bytes or text)."""
        return cls.from_hash({as_text(k): as_text(v) for k, v in data.items()})

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> BindRecord:
        def opt_int(name: str) -> int | None:
            v = data.get(name)
            return int(v) if v not in (None, "") else None

        def js(name: str) -> Any:
            # request, result and inflight hold phone numbers: sealed at rest (worker.sealing)
            v = data.get(name)
            return json.loads(unseal(v)) if v else None

        return cls(
            key=data.get("key", ""),
            status=data.get("status", ""),
            task_id=data.get("task_id", ""),
            request=js("request") or {},
            fingerprint=data.get("fingerprint", ""),
            pool=data.get("pool", ""),
            action=data.get("action", "bind") or "bind",
            attempts=int(data.get("attempts") or 0),
            throttles=int(data.get("throttles") or 0),
            outages=int(data.get("outages") or 0),
            code=data.get("code", ""),
            message=data.get("message", ""),
            request_id=data.get("request_id", ""),
            http_status=opt_int("http_status"),
            result=js("result"),
            inflight=js("inflight"),
            inflight_at_ms=opt_int("inflight_at"),
            created_at_ms=int(data.get("created_at") or 0),
            updated_at_ms=int(data.get("updated_at") or 0),
            deadline_ms=int(data.get("deadline") or 0),
            expires_at_ms=int(data.get("expires_at") or 0),
            first_attempt_at_ms=opt_int("first_attempt_at"),
            last_attempt_at_ms=opt_int("last_attempt_at"),
            succeeded_at_ms=opt_int("succeeded_at"),
            dead_lettered_at_ms=opt_int("dead_lettered_at"),
            next_at_ms=opt_int("next_at"),
            dlq_id=data.get("dlq_id", ""),
            published=data.get("published") == "1",
            starts=int(data.get("starts") or 0),
            cancel_requested=data.get("cancel_requested", ""),
            cancelled_at_ms=opt_int("cancelled_at"),
            unbound_at_ms=opt_int("unbound_at"),
            unbind_key=data.get("unbind_key", ""),
            expiration=data.get("expiration", ""),
            extended_at_ms=opt_int("extended_at"),
            extend_seq=int(data.get("extend_seq") or 0),
            target=data.get("target", ""),
            seq=int(data.get("seq") or 0),
            callback_url=data.get("callback_url", ""),
            callback_numbers=data.get("callback_numbers") == "1",
            possible_orphan=data.get("possible_orphan") == "1",
        )
