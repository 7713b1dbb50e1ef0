"""The producer API: validate, record, publish. ``from worker import enqueue_bind``.

A bad request raises :class:`~worker.errors.InvalidRequestError` at once, naming the field and
the vendor code it would cause, so an order system learns synchronously. An accepted request
has a record in Redis and a message on the queue before the call returns: from then on it ends
as ``succeeded`` or ``dead_lettered``.

Trip lifecycle: :func:`enqueue_unbind` (trip ends: release the X number) and
:func:`enqueue_extend` (trip runs late: move the Expiration) queue operations with the same
guarantees; see :mod:`worker.execution`. An unbind that arrives while its bind is still queued
or retrying cancels it if none of its requests can have bound (the bind ends ``cancelled`` and
is never bound later, not even by enqueueing or replaying the same key), or else waits for it
and unbinds what it made.

Completion callbacks: ``callback_url=`` (http/https, a public address unless
``AXB_CALLBACK_ALLOW_PRIVATE=true``; see :mod:`worker.callbacks.url`) asks the worker to POST the
result there when the bind or operation ends; ``callback_numbers=True`` shows phone numbers in
that body (masked otherwise). A refused URL raises :class:`~worker.errors.InvalidRequestError`
naming ``CallbackUrl`` and ``axb.CALLBACK_URL_REFUSED``. Enqueueing the same request again with
another URL is no conflict: the first URL stays.

Idempotency: every bind has a key (the explicit ``idempotency_key``, else ``OutId``, else a
hash of PoolKey, PhoneNoA, PhoneNoB and Expiration). Enqueueing a key again returns a handle
to the same bind; it never makes a second vendor binding. Reusing a key for a *different*
request raises :class:`~worker.errors.IdempotencyConflictError`.

Modules: :mod:`.checks` (argument types), :mod:`.idempotency` (keys), :mod:`.results` and
:mod:`.handles` (one result and one handle type for binds and operations), :mod:`.binds` (a
bind's row), :mod:`.commit` (publish what needs a message), :mod:`.single`, :mod:`.bulk`,
:mod:`.lifecycle` (unbind / extend).
"""

from __future__ import annotations

from worker.producer import checks
from worker.producer.binds import EXPIRATION_MARGIN_MS, PreparedBind, commit_prepared, prepare_bind
from worker.producer.bulk import (
    BindItem,
    BulkResult,
    PartialEnqueueError,
    PendingBinds,
    PreparedBinds,
    commit_binds,
    enqueue_binds,
    prepare_binds,
    start_binds,
)
from worker.producer.handles import BindHandle, BindTimeoutError, LifecycleHandle, RecordHandle, handle_for
from worker.producer.idempotency import MAX_KEY_LENGTH, derive_key
from worker.producer.lifecycle import (
    UNBIND_BY_SUBS_WINDOW_MS,
    LifecycleBulkResult,
    enqueue_extend,
    enqueue_lifecycle,
    enqueue_unbind,
    get_op_result,
)
from worker.producer.results import BindResult, LifecycleResult, RecordResult, lifecycle_state
from worker.producer.single import enqueue_bind, get_result

__all__ = [
    "EXPIRATION_MARGIN_MS",
    "MAX_KEY_LENGTH",
    "UNBIND_BY_SUBS_WINDOW_MS",
    "BindHandle",
    "BindItem",
    "BindResult",
    "BindTimeoutError",
    "BulkResult",
    "LifecycleBulkResult",
    "LifecycleHandle",
    "LifecycleResult",
    "PartialEnqueueError",
    "PendingBinds",
    "PreparedBind",
    "PreparedBinds",
    "RecordHandle",
    "RecordResult",
    "checks",
    "commit_binds",
    "commit_prepared",
    "derive_key",
    "enqueue_bind",
    "enqueue_binds",
    "enqueue_extend",
    "enqueue_lifecycle",
    "enqueue_unbind",
    "get_op_result",
    "get_result",
    "handle_for",
    "lifecycle_state",
    "prepare_bind",
    "prepare_binds",
    "start_binds",
]
