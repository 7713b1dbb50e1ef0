"""The producer API: validate, record, publish. ``from worker import enqueue_bind``.

A bad request raises :class:`~worker.errors.InvalidRequestError` at once, naming the field and
the vendor code it would cause, so an order system learns synchronously. An accepted request
has a record in Redis and a message on the queue before the call returns: from then on it ends
as ``succeeded`` or ``dead_lettered``.

Trip lifecycle: :func:`enqueue_unbind` (trip ends: release the X number) and
:func:`enqueue_extend` (trip runs late: move the Expiration) queue operations with the same
guarantees; see :mod:`worker.lifecycle`. An unbind that arrives while its bind is still queued
or retrying cancels it if none of its requests can have bound (the bind ends ``cancelled`` and
is never bound later, not even by enqueueing or replaying the same key), or else waits for it
and unbinds what it made.

Completion callbacks: ``callback_url=`` (http/https, a public address unless
``AXB_CALLBACK_ALLOW_PRIVATE=true``; see :mod:`worker.callback_url`) asks the worker to POST the
result there when the bind or operation ends; ``callback_numbers=True`` shows phone numbers in
that body (masked otherwise). A refused URL raises :class:`~worker.errors.InvalidRequestError`
naming ``CallbackUrl`` and ``axb.CALLBACK_URL_REFUSED``. Enqueueing the same request again with
another URL is no conflict: the first URL stays.

Idempotency: every bind has a key (the explicit ``idempotency_key``, else ``OutId``, else a
hash of PoolKey, PhoneNoA, PhoneNoB and Expiration). Enqueueing a key again returns a handle
to the same bind; it never makes a second vendor binding. Reusing a key for a *different*
request raises :class:`~worker.errors.IdempotencyConflictError`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from worker import arg_checks, errors, keys
from worker.callback_url import UrlChecker
from worker.errors import AxbError, IdempotencyConflictError, InvalidRequestError
from worker.masking import mask_obj, mask_text
from worker.models import (
    BindAxbRequest,
    SecretBindDTO,
    UnbindSubscriptionRequest,
    bind_default_key,
    bind_params,
    bind_stored_forms,
    format_expiration,
    parse_bind_request,
    parse_expiration,
    parse_request,
    to_cst,
)
from worker.runtime import Runtime, get_runtime
from worker.store import SUCCEEDED, TERMINAL, BindRecord, CreateOutcome, PendingCreates, now_ms

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
    action: str = "bind"
    expires_at: int = 0
    unbound_at: int | None = None
    cancel_requested: str = ""
    # The request as stored (vendor names: PoolKey, PhoneNoA, ...): unmasked.
    request: dict[str, Any] = field(default_factory=dict, compare=False)
    callback_url: str = ""
    callback_numbers: bool = False

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def state(self) -> str:
        """The binding's lifecycle as an order system sees it: ``bound`` (succeeded and live),
        ``unbound``, ``expired`` (its Expiration passed), or the status (``pending``,
        ``retrying``, ``dead_lettered``, ``cancelled``). For an unbind / extend record:
        ``unbound`` / ``extended`` once succeeded."""
        return lifecycle_state(self.action, self.status, self.unbound_at, self.expires_at)

    @property
    def expiration(self) -> str:
        """The binding's current Expiration (``yyyy-MM-dd HH:mm:ss``, UTC+8; extends move it)."""
        return _expiration_text(self.expires_at)

    @classmethod
    def from_record(cls, rec: BindRecord) -> BindResult:
        dto = None
        if rec.result and rec.action == "bind":
            dto = SecretBindDTO.model_validate(rec.result)
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
            action=rec.action,
            expires_at=rec.expires_at,
            unbound_at=rec.unbound_at,
            cancel_requested=rec.cancel_requested,
            request=rec.request,
            callback_url=rec.callback_url,
            callback_numbers=rec.callback_numbers,
        )

    def as_dict(self, *, show_numbers: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "status": self.status,
            "state": self.state,
            "expiration": self.expiration,
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
        if self.unbound_at:
            out["unbound_at"] = self.unbound_at
        if self.cancel_requested:
            out["unbind"] = self.cancel_requested
        return out if show_numbers else mask_obj(out)


def lifecycle_state(action: str, status: str, unbound_at: int | None, expires_at: int) -> str:
    if status != SUCCEEDED:
        return status
    if action == "unbind":
        return "unbound"
    if action == "extend":
        return "extended"
    if unbound_at:
        return "unbound"
    if expires_at and expires_at <= now_ms():
        return "expired"
    return "bound"


def _expiration_text(expires_ms: int) -> str:
    if not expires_ms:
        return ""
    return format_expiration(datetime.fromtimestamp(expires_ms / 1000, tz=UTC))


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
        """Wait until the bind succeeded, was dead-lettered or cancelled; raises BindTimeoutError."""
        return _wait_done(self.status, f"bind {self.key!r}", timeout, poll_s)


_R = TypeVar("_R", "BindResult", "LifecycleResult")


def _wait_done(load: Callable[[], _R | None], what: str, timeout: float | None, poll_s: float) -> _R:
    timeout = arg_checks.seconds("timeout", timeout)
    poll_s = arg_checks.seconds("poll_s", poll_s, optional=False) or 0.005
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = poll_s
    while True:
        res = load()
        if res is not None and res.done:
            return res
        if deadline is not None and time.monotonic() >= deadline:
            state = res.status if res else "missing"
            raise BindTimeoutError(f"{what} still {state} after {timeout:g} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


def derive_key(request: BindAxbRequest, idempotency_key: str | None = None) -> str:
    return _derive_key(request.to_json_dict(), idempotency_key)


def _derive_key(params: Mapping[str, Any], idempotency_key: str | None) -> str:
    """The bind's key: the explicit one, else ``OutId``, else a hash (``params`` is the request's
    ``to_json_dict()``)."""
    key = idempotency_key.strip() if idempotency_key else bind_default_key(params)
    _check_key(key)
    if key.startswith(keys.RESERVED_PREFIXES):
        raise InvalidRequestError.single(
            "IdempotencyKey",
            "isv.INVALID_PARAMETERS",
            "must not start with "
            + " or ".join(keys.RESERVED_PREFIXES)
            + " (lifecycle operations' and callbacks' keys)",
        )
    return key


def _check_key(key: str) -> None:
    # Whitespace other than " " is never printable: a printable key needs no closer look.
    if (
        not key
        or len(key) > MAX_KEY_LENGTH
        or (not key.isprintable() and any(c.isspace() and c != " " for c in key))
    ):
        raise InvalidRequestError.single(
            "IdempotencyKey", "isv.INVALID_PARAMETERS", f"must be 1-{MAX_KEY_LENGTH} printable characters"
        )


class _Prepared(NamedTuple):
    key: str
    row: dict[str, Any]


def _callback_fields(check: UrlChecker, url: object, numbers: object) -> dict[str, Any]:
    """A row's callback fields (none without a URL); a refused URL raises."""
    if url is None:
        return {}
    if not isinstance(numbers, bool):
        raise InvalidRequestError.single(
            "callback_numbers", arg_checks.INVALID, f"must be True or False, not {type(numbers).__name__}"
        )
    return {"callback_url": check(url), "callback_numbers": numbers}


def _url_checker(rt: Runtime) -> UrlChecker:
    return UrlChecker(allow_private=rt.settings.callback_allow_private)


def _prepare(
    item: BindAxbRequest | Mapping[str, Any],
    idempotency_key: str | None,
    deadline: datetime | None,
    rt: Runtime,
    callback: dict[str, Any] | None = None,
) -> _Prepared:
    arg_checks.text("idempotency_key", idempotency_key)
    # The fast path accepts exactly what parse_bind_request accepts, with the same result; for
    # anything it is unsure of, parse_bind_request accepts it or raises the error.
    fast = bind_params(item)
    if fast is not None:
        params, expires_ms = fast
    else:
        request = parse_bind_request(item)
        params = request.to_json_dict()
        expires_ms = int(request.expiration.timestamp() * 1000)
    key = _derive_key(params, idempotency_key)
    deadline_ms = expires_ms - EXPIRATION_MARGIN_MS
    if deadline is not None:
        if deadline.tzinfo is None:
            raise InvalidRequestError.single("deadline", "isv.INVALID_PARAMETERS", "must be timezone-aware")
        deadline_ms = min(deadline_ms, int(deadline.timestamp() * 1000))
    ttl_s = max(60, (expires_ms // 1000 - int(time.time())) + rt.settings.result_ttl_extra_s)
    request_json, fingerprint = bind_stored_forms(params)
    row = {
        "key": key,
        "task_id": keys.task_id_for(key),
        "request": request_json,
        "fingerprint": fingerprint,
        "pool": params["PoolKey"],
        "deadline": deadline_ms,
        "expires_at": expires_ms,
        "ttl_s": ttl_s,
    }
    if callback:
        row.update(callback)
    return _Prepared(key, row)


def _commit(
    rt: Runtime, prepared: Sequence[_Prepared], outcomes: Sequence[CreateOutcome] | None = None
) -> list[BindHandle | IdempotencyConflictError]:
    """Record (unless ``outcomes`` already tells how that went), publish, mark published."""
    if outcomes is None:
        outcomes = rt.store.create_many([p.row for p in prepared])
    to_publish: list[str] = []
    out: list[BindHandle | IdempotencyConflictError] = []
    for p, oc in zip(prepared, outcomes, strict=True):
        if not oc.created and oc.fingerprint != p.row["fingerprint"]:
            out.append(IdempotencyConflictError(p.key))
            continue
        # A new record, or one whose message may never have been published (the producer
        # died between the two steps): publish. A duplicate message is harmless.
        if oc.created or (not oc.published and oc.status not in TERMINAL):
            to_publish.append(p.key)
        out.append(BindHandle(p.key, p.row["task_id"], oc.created, rt))
    if to_publish:
        # Bulk enqueues carry many keys per message (AXB_BATCH_SIZE); a single one goes alone.
        rt.publish(to_publish, batch=len(to_publish) > 1)
        rt.store.mark_published(to_publish)
    return out


def enqueue_bind(
    request: BindAxbRequest | Mapping[str, Any] | None = None,
    /,
    *,
    idempotency_key: str | None = None,
    deadline: datetime | None = None,
    callback_url: str | None = None,
    callback_numbers: bool = False,
    **fields: Any,
) -> BindHandle:
    """Validate and enqueue one bind; returns a :class:`BindHandle`.

    ``request`` is a :class:`BindAxbRequest` or a mapping with API names (``PhoneNoA``) or
    field names (``phone_no_a``); keyword fields work too. ``deadline`` (aware datetime)
    stops retries earlier than the binding's own Expiration. ``callback_url``: POST the result
    there when the bind ends (numbers masked unless ``callback_numbers``). A wrong type for any
    argument raises :class:`InvalidRequestError` naming it.
    """
    arg_checks.text("idempotency_key", idempotency_key)
    arg_checks.deadline(deadline)
    rt = get_runtime()
    item: BindAxbRequest | Mapping[str, Any] = request if request is not None else fields
    prepared = _prepare(item, idempotency_key, deadline, rt)
    if callback_url is not None:
        prepared.row.update(_callback_fields(_url_checker(rt), callback_url, callback_numbers))
    result = _commit(rt, [prepared])[0]
    if isinstance(result, IdempotencyConflictError):
        raise result
    return result


@dataclass
class BulkResult:
    """``handles[i]`` is the handle of item ``indices[i]``; ``rejected`` holds (index, error)."""

    handles: list[BindHandle] = field(default_factory=list)
    rejected: list[tuple[int, AxbError]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for h in self.handles if h.created)


class PartialEnqueueError(AxbError):
    """:func:`enqueue_binds` stopped part-way (its iterable raised, Redis failed, ...) after
    committing some items. ``result`` is exactly what was committed (``result.indices``: the
    items that have a record and a message) and rejected; ``uncertain`` are the indices of a
    chunk that was on its way to Redis when it stopped: they may or may not be recorded, and
    enqueueing them again is safe (same keys, no second binding). Every other item was not
    committed. ``__cause__`` is the error."""

    def __init__(self, result: BulkResult, uncertain: list[int], cause: BaseException) -> None:
        self.result = result
        self.uncertain = uncertain
        super().__init__(
            mask_text(
                f"enqueue_binds stopped after committing {len(result.handles)} item(s)"
                f" ({len(uncertain)} more may be recorded; enqueue them again):"
                f" {type(cause).__name__}: {cause}"
            )
        )


BindItem = (
    BindAxbRequest
    | Mapping[str, Any]
    | tuple[BindAxbRequest | Mapping[str, Any], str | None]
    | tuple[BindAxbRequest | Mapping[str, Any], str | None, str | None]
)


def enqueue_binds(
    items: Iterable[BindItem],
    *,
    deadline: datetime | None = None,
    chunk: int = 1000,
    callback_url: str | None = None,
    callback_numbers: bool = False,
) -> BulkResult:
    """Validate and enqueue many binds with pipelined round trips.

    Items are requests, ``(request, idempotency_key)`` pairs or ``(request, idempotency_key,
    callback_url)`` triples (the key may be None; the item's URL overrides ``callback_url``).
    Invalid items (a wrong type or a refused callback URL included) are reported in
    ``rejected`` with their index and error; they never stop the others. ``result.indices``
    tells which item each handle is for.

    Items are committed chunk by chunk as the iterable is read. If the call stops part-way
    for any other reason (the iterable raises, Redis fails) after a chunk was committed, it
    raises :class:`PartialEnqueueError` carrying the committed items, never a bare error; when
    nothing was committed yet, the error itself is raised. Wrong types for ``items``,
    ``deadline`` or ``chunk`` raise :class:`InvalidRequestError` before anything is committed.
    """
    items = arg_checks.items(items)
    arg_checks.deadline(deadline)
    arg_checks.positive_int("chunk", chunk)
    rt = get_runtime()
    check = _url_checker(rt)
    out = BulkResult()
    batch: list[_Prepared] = []
    batch_index: list[int] = []
    sending: list[int] = []  # the chunk on its way to Redis: unknown if it stops meanwhile

    def flush() -> None:
        sending[:] = batch_index
        _collect(out, batch_index, _commit(rt, batch))
        sending.clear()
        batch.clear()
        batch_index.clear()

    try:
        for i, item in enumerate(items):
            try:
                req, key, url = _split_item(item, callback_url)
                callback = _callback_fields(check, url, callback_numbers)
                batch.append(_prepare(req, key, deadline, rt, callback))
                batch_index.append(i)
            except AxbError as err:
                out.rejected.append((i, err))
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
    except Exception as exc:
        if not out.handles:
            raise  # nothing committed: the error says it all
        raise PartialEnqueueError(out, list(sending), exc) from exc
    return out


def _split_item(item: Any, callback_url: str | None = None) -> tuple[Any, Any, Any]:
    """A bulk item: a request, a ``(request, idempotency_key)`` pair or a ``(request,
    idempotency_key, callback_url)`` triple; the batch's ``callback_url`` unless the item has one."""
    if not isinstance(item, tuple):
        return item, None, callback_url
    if len(item) not in (2, 3):
        raise InvalidRequestError.single(
            "item",
            arg_checks.INVALID,
            "must be a request, a (request, idempotency_key) pair or a (request, idempotency_key,"
            " callback_url) triple",
        )
    url = item[2] if len(item) == 3 and item[2] is not None else callback_url
    return item[0], item[1], url


def _collect(
    out: BulkResult, index: Sequence[int], results: Sequence[BindHandle | IdempotencyConflictError]
) -> None:
    for idx, res in zip(index, results, strict=True):
        if isinstance(res, IdempotencyConflictError):
            out.rejected.append((idx, res))
        else:
            out.handles.append(res)
            out.indices.append(idx)


@dataclass
class PreparedBinds:
    """Binds validated by :func:`prepare_binds`, not yet recorded or published."""

    prepared: list[_Prepared] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    rejected: list[tuple[int, AxbError]] = field(default_factory=list)


def prepare_binds(
    items: Iterable[BindItem],
    *,
    deadline: datetime | None = None,
    callback_url: str | None = None,
    callback_numbers: bool = False,
) -> PreparedBinds:
    """The first half of :func:`enqueue_binds` for one batch: validation, keys and fingerprints.
    Touches no Redis, so a caller may prepare the next batch while the last one is committed."""
    arg_checks.deadline(deadline)
    rt = get_runtime()
    check = _url_checker(rt)
    out = PreparedBinds()
    for i, item in enumerate(items):
        try:
            req, key, url = _split_item(item, callback_url)
            callback = _callback_fields(check, url, callback_numbers)
            out.prepared.append(_prepare(req, key, deadline, rt, callback))
            out.index.append(i)
        except AxbError as err:
            out.rejected.append((i, err))
    return out


def commit_binds(batch: PreparedBinds) -> BulkResult:
    """The second half: record and publish a prepared batch, as one :func:`enqueue_binds` chunk
    (``rejected`` holds the batch's invalid items, then its idempotency conflicts)."""
    return start_binds(batch).finish()


def start_binds(batch: PreparedBinds) -> PendingBinds:
    """:func:`commit_binds` in two halves: the records' creation goes out to Redis now, and
    :meth:`PendingBinds.finish` takes the answers, publishes and marks. In between, Redis works
    while the caller prepares its next batch."""
    rt = get_runtime()
    pending = rt.store.start_create_many([p.row for p in batch.prepared]) if batch.prepared else None
    return PendingBinds(rt, batch, pending)


@dataclass
class PendingBinds:
    """A prepared batch whose records are being created (see :func:`start_binds`)."""

    rt: Runtime
    batch: PreparedBinds
    creating: PendingCreates | None

    def finish(self) -> BulkResult:
        out = BulkResult(rejected=list(self.batch.rejected))
        if self.creating is not None:
            outcomes = self.creating.result()
            _collect(out, self.batch.index, _commit(self.rt, self.batch.prepared, outcomes))
        return out

    def discard(self) -> None:
        """Stop waiting for the answers (the records are created all the same, not published:
        enqueueing the rows again publishes them)."""
        if self.creating is not None:
            self.creating.discard()


def get_result(key: str) -> BindResult | None:
    arg_checks.text("key", key, optional=False)
    rec = get_runtime().store.get(key)
    return BindResult.from_record(rec) if rec else None


def handle_for(key: str) -> BindHandle:
    return BindHandle(key, keys.task_id_for(key), False)


# --- trip lifecycle: unbind and extend ------------------------------------------------------------

# An unbind given only by SubsId (no bind record) may be retried for this long.
UNBIND_BY_SUBS_WINDOW_MS = 86_400_000


@dataclass(frozen=True)
class LifecycleResult:
    """What a producer sees of an unbind or extend: status, outcome and the binding it acted on.

    ``outcome`` once succeeded: ``unbound``, ``already_gone`` (the vendor had no such
    subscription), ``cancelled`` (the bind was cancelled before any request could bind),
    ``never_bound`` (the bind was dead-lettered), ``expired``, ``gone`` (no record any more),
    ``already_unbound``; for an extend ``extended`` or ``superseded`` (a later extend wins).
    """

    key: str
    action: str
    target: str
    status: str
    outcome: str = ""
    code: str = ""
    message: str = ""
    request_id: str = ""
    attempts: int = 0
    task_id: str = ""
    created_at: int = 0
    updated_at: int = 0
    dlq_id: str = ""
    pool_key: str = ""
    subs_id: str = ""
    secret_no: str = ""
    expiration: str = ""
    callback_url: str = ""
    callback_numbers: bool = False

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def state(self) -> str:
        return lifecycle_state(self.action, self.status, None, 0)

    @classmethod
    def from_record(cls, rec: BindRecord) -> LifecycleResult:
        res = rec.result or {}
        req = rec.request
        return cls(
            key=rec.key,
            action=rec.action,
            target=rec.target or str(req.get("IdempotencyKey") or ""),
            status=rec.status,
            outcome=str(res.get("Outcome") or ""),
            code=rec.code,
            message=rec.message,
            request_id=rec.request_id,
            attempts=rec.attempts,
            task_id=rec.task_id,
            created_at=rec.created_at,
            updated_at=rec.updated_at,
            dlq_id=rec.dlq_id,
            pool_key=str(res.get("PoolKey") or req.get("PoolKey") or rec.pool),
            subs_id=str(res.get("SubsId") or req.get("SubsId") or ""),
            secret_no=str(res.get("SecretNo") or req.get("SecretNo") or ""),
            expiration=str(res.get("Expiration") or req.get("Expiration") or ""),
            callback_url=rec.callback_url,
            callback_numbers=rec.callback_numbers,
        )

    def as_dict(self, *, show_numbers: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "action": self.action,
            "target": self.target,
            "status": self.status,
            "state": self.state,
            "outcome": self.outcome,
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
            "attempts": self.attempts,
            "task_id": self.task_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "PoolKey": self.pool_key,
            "SubsId": self.subs_id,
            "SecretNo": self.secret_no,
        }
        if self.action == "extend":
            out["Expiration"] = self.expiration
        if self.dlq_id:
            out["dlq_id"] = self.dlq_id
        return out if show_numbers else mask_obj(out)


@dataclass
class LifecycleHandle:
    key: str
    action: str
    target: str
    task_id: str
    created: bool
    _runtime: Runtime | None = field(default=None, repr=False)

    def _rt(self) -> Runtime:
        return self._runtime or get_runtime()

    def status(self) -> LifecycleResult | None:
        rec = self._rt().store.get(self.key)
        return LifecycleResult.from_record(rec) if rec else None

    def result(self, timeout: float | None = 30.0, *, poll_s: float = 0.005) -> LifecycleResult:
        """Wait until the operation succeeded or was dead-lettered; raises BindTimeoutError."""
        return _wait_done(self.status, f"{self.action} {self.key!r}", timeout, poll_s)


def _op_row(
    rt: Runtime,
    *,
    op_key: str,
    action: str,
    target: str,
    request: dict[str, Any],
    pool: str,
    deadline_ms: int,
    expires_ms: int,
) -> dict[str, Any]:
    ttl_s = max(3600, (expires_ms - now_ms()) // 1000 + rt.settings.result_ttl_extra_s)
    return {
        "key": op_key,
        "task_id": keys.task_id_for(op_key, action),
        "request": json.dumps(request, ensure_ascii=False, separators=(",", ":")),
        "fingerprint": op_key,
        "pool": pool,
        "deadline": deadline_ms,
        "expires_at": expires_ms,
        "ttl_s": ttl_s,
        "action": action,
        "target": target,
    }


def _prepare_unbind(
    rt: Runtime,
    key: str | None,
    rec: BindRecord | None,
    *,
    subs_id: str | None = None,
    pool_key: str | None = None,
    secret_no: str | None = None,
) -> dict[str, Any]:
    given = {"PoolKey": pool_key, "SubsId": subs_id, "SecretNo": secret_no}
    explicit: dict[str, str] = {}
    if any(v not in (None, "") for v in given.values()):
        req = parse_request(
            UnbindSubscriptionRequest, {k: v for k, v in given.items() if v not in (None, "")}
        )
        explicit = {"PoolKey": req.pool_key, "SubsId": req.subs_id, "SecretNo": req.secret_no}
    now = now_ms()
    if key:
        key = key.strip()
        _check_key(key)
        if rec is not None and rec.action != "bind":
            raise InvalidRequestError.single("IdempotencyKey", errors.UNKNOWN_KEY, "is not a bind's key")
        if rec is None and not explicit:
            raise InvalidRequestError.single(
                "IdempotencyKey",
                errors.UNKNOWN_KEY,
                "no bind with this key (never enqueued, or its result expired); give SubsId, PoolKey"
                " and SecretNo to unbind by subscription",
            )
        if (
            rec is not None
            and explicit
            and (rec.result or {}).get("SubsId") not in (None, explicit["SubsId"])
        ):
            raise InvalidRequestError.single(
                "SubsId", "isv.INVALID_PARAMETERS", "is not the SubsId of this key's binding"
            )
        expires_ms = rec.expires_at if rec is not None else now + UNBIND_BY_SUBS_WINDOW_MS
        return _op_row(
            rt,
            op_key=keys.unbind_op(key),
            action="unbind",
            target=key if rec is not None else "",
            request={"IdempotencyKey": key, **explicit},
            pool=rec.pool if rec is not None else explicit["PoolKey"],
            # Past the binding's Expiration nothing of it is live: the unbind has nothing to do.
            deadline_ms=expires_ms,
            expires_ms=max(expires_ms, now),
        )
    if not explicit:
        raise InvalidRequestError.single(
            "IdempotencyKey", "isv.INVALID_PARAMETERS", "give a bind's key, or SubsId, PoolKey and SecretNo"
        )
    return _op_row(
        rt,
        op_key=keys.unbind_subs_op(explicit["PoolKey"], explicit["SubsId"]),
        action="unbind",
        target="",
        request=explicit,
        pool=explicit["PoolKey"],
        deadline_ms=now + UNBIND_BY_SUBS_WINDOW_MS,
        expires_ms=now + UNBIND_BY_SUBS_WINDOW_MS,
    )


def _prepare_extend(rt: Runtime, key: str, rec: BindRecord | None, expiration: Any) -> dict[str, Any]:
    key = (key or "").strip()
    _check_key(key)
    moment = parse_expiration(expiration)
    if rec is None or rec.action != "bind":
        raise InvalidRequestError.single(
            "IdempotencyKey",
            errors.UNKNOWN_KEY,
            "no bind with this key (never enqueued, or its result expired)",
        )
    cst = to_cst(moment)
    expires_ms = int(cst.timestamp() * 1000)
    return _op_row(
        rt,
        op_key=keys.extend_op(key, cst.strftime("%Y%m%d%H%M%S")),
        action="extend",
        target=key,
        request={"IdempotencyKey": key, "Expiration": format_expiration(cst)},
        pool=rec.pool,
        # The vendor refuses an Expiration less than a minute away.
        deadline_ms=expires_ms - EXPIRATION_MARGIN_MS,
        expires_ms=expires_ms,
    )


def _commit_ops(rt: Runtime, rows: Sequence[dict[str, Any]]) -> list[LifecycleHandle]:
    outcomes = rt.store.create_ops(rows)
    to_publish = [
        row["key"]
        for row, oc in zip(rows, outcomes, strict=True)
        if oc.created or oc.rearmed or (not oc.published and oc.status not in TERMINAL)
    ]
    if to_publish:
        rt.publish(to_publish)
        rt.store.mark_published(to_publish)
    return [
        LifecycleHandle(
            row["key"], row["action"], row["target"], row["task_id"], oc.created or oc.rearmed, rt
        )
        for row, oc in zip(rows, outcomes, strict=True)
    ]


def enqueue_unbind(
    key: str | None = None,
    *,
    subs_id: str | None = None,
    pool_key: str | None = None,
    secret_no: str | None = None,
    callback_url: str | None = None,
    callback_numbers: bool = False,
) -> LifecycleHandle:
    """Release a binding (trip ended): by the bind's idempotency ``key`` (its stored SubsId and
    SecretNo are used), or by ``subs_id`` + ``pool_key`` + ``secret_no``. ``callback_url``: POST
    the result there when the unbind ends (numbers masked unless ``callback_numbers``).

    Idempotent: unbinding a key twice returns the same operation and calls the vendor once; an
    unbind of a binding already gone succeeds. An unbind that arrives while the bind is still
    queued or retrying cancels it if none of its requests can have bound (the bind ends
    ``cancelled``, and is never bound later), or else waits for it and then unbinds.
    Raises :class:`InvalidRequestError` for an unknown key without subscription details, and
    for a wrong type of any argument (naming it).
    """
    arg_checks.text("key", key)
    arg_checks.digits_or_text("subs_id", subs_id)
    arg_checks.text("pool_key", pool_key)
    arg_checks.digits_or_text("secret_no", secret_no)
    rt = get_runtime()
    rec = rt.store.get(key.strip()) if key else None
    row = _prepare_unbind(rt, key, rec, subs_id=subs_id, pool_key=pool_key, secret_no=secret_no)
    row.update(_callback_fields(_url_checker(rt), callback_url, callback_numbers))
    return _commit_ops(rt, [row])[0]


def enqueue_extend(
    key: str,
    expiration: str | datetime,
    *,
    callback_url: str | None = None,
    callback_numbers: bool = False,
) -> LifecycleHandle:
    """Move bind ``key``'s Expiration (trip runs late): ``yyyy-MM-dd HH:mm:ss`` (UTC+8) or an aware
    datetime, more than a minute from now. Waits for a pending bind; the stored result's TTL
    follows the new Expiration. Asking twice for the same Expiration is one operation; of
    several extends of a key the latest asked for wins. ``callback_url``: POST the result there
    when the extend ends (numbers masked unless ``callback_numbers``). A wrong type of an
    argument raises :class:`InvalidRequestError` naming it."""
    arg_checks.text("key", key, optional=False)
    arg_checks.expiration(expiration)
    rt = get_runtime()
    rec = rt.store.get(key.strip()) if key else None
    row = _prepare_extend(rt, key, rec, expiration)
    row.update(_callback_fields(_url_checker(rt), callback_url, callback_numbers))
    return _commit_ops(rt, [row])[0]


@dataclass
class LifecycleBulkResult:
    handles: list[LifecycleHandle] = field(default_factory=list)
    rejected: list[tuple[int, AxbError]] = field(default_factory=list)


def enqueue_lifecycle(items: Sequence[tuple[str, Mapping[str, Any]]]) -> LifecycleBulkResult:
    """Many unbinds / extends with pipelined round trips (the backfill's ``Action`` rows).

    Each item is ``("unbind", {"IdempotencyKey" | "SubsId", "PoolKey", "SecretNo"})`` or
    ``("extend", {"IdempotencyKey", "Expiration"})``; invalid items come back in ``rejected``.
    """
    rt = get_runtime()
    out = LifecycleBulkResult()
    targets = [str(fields.get("IdempotencyKey") or "").strip() for _action, fields in items]
    records = rt.store.get_many([t for t in targets if t]) if any(targets) else []
    by_key = dict(zip([t for t in targets if t], records, strict=True))
    rows: list[dict[str, Any]] = []
    for i, ((action, fields), target) in enumerate(zip(items, targets, strict=True)):
        rec = by_key.get(target) if target else None
        try:
            if action == "unbind":
                rows.append(
                    _prepare_unbind(
                        rt,
                        target or None,
                        rec,
                        subs_id=_text(fields.get("SubsId")),
                        pool_key=_text(fields.get("PoolKey")),
                        secret_no=_text(fields.get("SecretNo")),
                    )
                )
            elif action == "extend":
                rows.append(_prepare_extend(rt, target, rec, fields.get("Expiration")))
            else:
                raise InvalidRequestError.single(
                    "Action", "isv.INVALID_PARAMETERS", "must be bind, unbind or extend"
                )
        except AxbError as err:
            out.rejected.append((i, err))
    if rows:
        out.handles.extend(_commit_ops(rt, rows))
    return out


def _text(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def get_op_result(key: str) -> LifecycleResult | None:
    """An unbind's or extend's result by its key (``handle.key``: ``unbind:<key>``, …)."""
    arg_checks.text("key", key, optional=False)
    rec = get_runtime().store.get(key)
    return LifecycleResult.from_record(rec) if rec else None
