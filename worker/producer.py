"""The producer API: validate, record, publish. ``from worker import enqueue_bind``.

A bad request raises :class:`~worker.errors.InvalidRequestError` at once, naming the field and
the vendor code it would cause, so an order system learns synchronously. An accepted request
has a record in Redis and a message on the queue before the call returns: from then on it ends
as ``succeeded`` or ``dead_lettered``.

Idempotency: every bind has a key (the explicit ``idempotency_key``, else ``OutId``, else a
hash of PoolKey, PhoneNoA, PhoneNoB and Expiration). Enqueueing a key again returns a handle
to the same bind; it never makes a second vendor binding. Reusing a key for a *different*
request raises :class:`~worker.errors.IdempotencyConflictError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker import keys
from worker.errors import AxbError, IdempotencyConflictError, InvalidRequestError
from worker.masking import mask_obj
from worker.models import BindAxbRequest, SecretBindDTO, parse_bind_request
from worker.runtime import Runtime, get_runtime
from worker.store import DEAD_LETTERED, SUCCEEDED, TERMINAL, BindRecord

# The vendor refuses an Expiration less than a minute away: stop calling a little before that.
EXPIRATION_MARGIN_MS = 60_000
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class BindResult:
    """What a producer sees of a bind: its status and, once succeeded, the SecretBindDTO."""

    key: str
    status: str
    dto: SecretBindDTO | None = None
    code: str = ""
    message: str = ""
    request_id: str = ""
    attempts: int = 0
    task_id: str = ""
    created_at: int = 0
    updated_at: int = 0
    dlq_id: str = ""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    @classmethod
    def from_record(cls, rec: BindRecord) -> BindResult:
        dto = SecretBindDTO.model_validate(rec.result) if rec.result else None
        return cls(
            key=rec.key,
            status=rec.status,
            dto=dto,
            code=rec.code,
            message=rec.message,
            request_id=rec.request_id,
            attempts=rec.attempts,
            task_id=rec.task_id,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            dlq_id=rec.dlq_id,
        )

    def as_dict(self, *, show_numbers: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
            "attempts": self.attempts,
            "task_id": self.task_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "SecretBindDTO": self.dto.model_dump(by_alias=True) if self.dto else None,
        }
        if self.dlq_id:
            out["dlq_id"] = self.dlq_id
        return out if show_numbers else mask_obj(out)


class BindTimeoutError(AxbError, TimeoutError):
    """The bind did not finish within the wait; it goes on in the background."""


@dataclass
class BindHandle:
    key: str
    task_id: str
    created: bool
    _runtime: Runtime | None = field(default=None, repr=False)

    def _rt(self) -> Runtime:
        return self._runtime or get_runtime()

    def status(self) -> BindResult | None:
        rec = self._rt().store.get(self.key)
        return BindResult.from_record(rec) if rec else None

    def result(self, timeout: float | None = 30.0, *, poll_s: float = 0.005) -> BindResult:
        """Wait until the bind succeeded or was dead-lettered; raises BindTimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll_s
        while True:
            res = self.status()
            if res is not None and res.done:
                return res
            if deadline is not None and time.monotonic() >= deadline:
                state = res.status if res else "missing"
                raise BindTimeoutError(f"bind {self.key!r} still {state} after {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)


def derive_key(request: BindAxbRequest, idempotency_key: str | None = None) -> str:
    key = idempotency_key.strip() if idempotency_key else request.default_idempotency_key()
    if not key or len(key) > MAX_KEY_LENGTH or any(c.isspace() and c != " " for c in key):
        raise InvalidRequestError.single(
            "IdempotencyKey", "isv.INVALID_PARAMETERS", f"must be 1-{MAX_KEY_LENGTH} printable characters"
        )
    return key


@dataclass(frozen=True)
class _Prepared:
    key: str
    request: BindAxbRequest
    row: dict[str, Any]


def _prepare(
    item: BindAxbRequest | Mapping[str, Any],
    idempotency_key: str | None,
    deadline: datetime | None,
    rt: Runtime,
) -> _Prepared:
    request = parse_bind_request(item)
    key = derive_key(request, idempotency_key)
    expires_ms = int(request.expiration.timestamp() * 1000)
    deadline_ms = expires_ms - EXPIRATION_MARGIN_MS
    if deadline is not None:
        if deadline.tzinfo is None:
            raise InvalidRequestError.single("deadline", "isv.INVALID_PARAMETERS", "must be timezone-aware")
        deadline_ms = min(deadline_ms, int(deadline.timestamp() * 1000))
    ttl_s = max(60, (expires_ms // 1000 - int(time.time())) + rt.settings.result_ttl_extra_s)
    row = {
        "key": key,
        "task_id": keys.task_id_for(key),
        "request": json.dumps(request.to_json_dict(), ensure_ascii=False, separators=(",", ":")),
        "fingerprint": request.fingerprint(),
        "pool": request.pool_key,
        "deadline": deadline_ms,
        "expires_at": expires_ms,
        "ttl_s": ttl_s,
    }
    return _Prepared(key, request, row)


def _commit(rt: Runtime, prepared: Sequence[_Prepared]) -> list[BindHandle | IdempotencyConflictError]:
    outcomes = rt.store.create_many([p.row for p in prepared])
    to_publish: list[str] = []
    out: list[BindHandle | IdempotencyConflictError] = []
    for p, oc in zip(prepared, outcomes, strict=True):
        if not oc.created and oc.fingerprint != p.row["fingerprint"]:
            out.append(IdempotencyConflictError(p.key))
            continue
        # A new record, or one whose message may never have been published (the producer
        # died between the two steps): publish. A duplicate message is harmless.
        if oc.created or (not oc.published and oc.status not in (SUCCEEDED, DEAD_LETTERED)):
            to_publish.append(p.key)
        out.append(BindHandle(p.key, p.row["task_id"], oc.created, rt))
    if to_publish:
        rt.publish(to_publish)
        rt.store.mark_published(to_publish)
    return out


def enqueue_bind(
    request: BindAxbRequest | Mapping[str, Any] | None = None,
    /,
    *,
    idempotency_key: str | None = None,
    deadline: datetime | None = None,
    **fields: Any,
) -> BindHandle:
    """Validate and enqueue one bind; returns a :class:`BindHandle`.

    ``request`` is a :class:`BindAxbRequest` or a mapping with API names (``PhoneNoA``) or
    field names (``phone_no_a``); keyword fields work too. ``deadline`` (aware datetime)
    stops retries earlier than the binding's own Expiration.
    """
    rt = get_runtime()
    item: BindAxbRequest | Mapping[str, Any] = request if request is not None else fields
    prepared = _prepare(item, idempotency_key, deadline, rt)
    result = _commit(rt, [prepared])[0]
    if isinstance(result, IdempotencyConflictError):
        raise result
    return result


@dataclass
class BulkResult:
    handles: list[BindHandle] = field(default_factory=list)
    rejected: list[tuple[int, AxbError]] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for h in self.handles if h.created)


def enqueue_binds(
    items: Iterable[
        BindAxbRequest | Mapping[str, Any] | tuple[BindAxbRequest | Mapping[str, Any], str | None]
    ],
    *,
    deadline: datetime | None = None,
    chunk: int = 1000,
) -> BulkResult:
    """Validate and enqueue many binds with pipelined round trips.

    Items are requests, or ``(request, idempotency_key)`` pairs. Invalid items are reported in
    ``rejected`` with their index and error; they never stop the others.
    """
    rt = get_runtime()
    out = BulkResult()
    batch: list[_Prepared] = []
    batch_index: list[int] = []

    def flush() -> None:
        for idx, res in zip(batch_index, _commit(rt, batch), strict=True):
            if isinstance(res, IdempotencyConflictError):
                out.rejected.append((idx, res))
            else:
                out.handles.append(res)
        batch.clear()
        batch_index.clear()

    for i, item in enumerate(items):
        req, key = item if isinstance(item, tuple) else (item, None)
        try:
            batch.append(_prepare(req, key, deadline, rt))
            batch_index.append(i)
        except AxbError as err:
            out.rejected.append((i, err))
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return out


def get_result(key: str) -> BindResult | None:
    rec = get_runtime().store.get(key)
    return BindResult.from_record(rec) if rec else None


def handle_for(key: str) -> BindHandle:
    return BindHandle(key, keys.task_id_for(key), False)
