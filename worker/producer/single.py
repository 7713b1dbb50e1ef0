"""Enqueue one bind and read a bind's result: ``from worker import enqueue_bind``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from worker.errors import IdempotencyConflictError
from worker.producer import checks
from worker.producer.binds import callback_fields, commit_prepared, prepare_bind, url_checker
from worker.producer.handles import BindHandle
from worker.producer.results import BindResult
from worker.runtime import get_runtime
from worker.vendor import BindAxbRequest


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
    checks.text("idempotency_key", idempotency_key)
    checks.deadline(deadline)
    rt = get_runtime()
    item: BindAxbRequest | Mapping[str, Any] = request if request is not None else fields
    prepared = prepare_bind(item, idempotency_key, deadline, rt)
    if callback_url is not None:
        prepared.row.update(callback_fields(url_checker(rt), callback_url, callback_numbers))
    result = commit_prepared(rt, [prepared])[0]
    if isinstance(result, IdempotencyConflictError):
        raise result
    return result


def get_result(key: str) -> BindResult | None:
    checks.text("key", key, optional=False)
    rec = get_runtime().store.get(key)
    return BindResult.from_record(rec) if rec else None
