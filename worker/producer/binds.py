"""A bind's row: validated, keyed and fingerprinted (:func:`prepare_bind`, no Redis), then
recorded and published (:func:`commit_prepared`). Single and bulk enqueues share both."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from worker import keys
from worker.callbacks import UrlChecker
from worker.errors import IdempotencyConflictError, InvalidRequestError
from worker.producer import checks
from worker.producer.commit import publish_missing
from worker.producer.handles import BindHandle
from worker.producer.idempotency import key_for_params
from worker.runtime import Runtime
from worker.store import CreateOutcome
from worker.vendor import BindAxbRequest, bind_params, bind_stored_forms, parse_bind_request

# The vendor refuses an Expiration less than a minute away: stop calling a little before that.
EXPIRATION_MARGIN_MS = 60_000


class PreparedBind(NamedTuple):
    key: str
    row: dict[str, Any]


def callback_fields(check: UrlChecker, url: object, numbers: object) -> dict[str, Any]:
    """A row's callback fields (none without a URL); a refused URL raises."""
    if url is None:
        return {}
    if not isinstance(numbers, bool):
        raise InvalidRequestError.single(
            "callback_numbers", checks.INVALID, f"must be True or False, not {type(numbers).__name__}"
        )
    return {"callback_url": check(url), "callback_numbers": numbers}


def url_checker(rt: Runtime) -> UrlChecker:
    return UrlChecker(allow_private=rt.settings.callback_allow_private)


def prepare_bind(
    item: BindAxbRequest | Mapping[str, Any],
    idempotency_key: str | None,
    deadline: datetime | None,
    rt: Runtime,
    callback: dict[str, Any] | None = None,
) -> PreparedBind:
    checks.text("idempotency_key", idempotency_key)
    # The fast path accepts exactly what parse_bind_request accepts, with the same result; for
    # anything it is unsure of, parse_bind_request accepts it or raises the error.
    fast = bind_params(item)
    if fast is not None:
        params, expires_ms = fast
    else:
        request = parse_bind_request(item)
        params = request.to_json_dict()
        expires_ms = int(request.expiration.timestamp() * 1000)
    key = key_for_params(params, idempotency_key)
    deadline_ms = expires_ms - EXPIRATION_MARGIN_MS
    if deadline is not None:
        if deadline.tzinfo is None:
            raise InvalidRequestError.single("deadline", "isv.INVALID_PARAMETERS", "must be timezone-aware")
        deadline_ms = min(deadline_ms, int(deadline.timestamp() * 1000))
    ttl_s = max(60, (expires_ms // 1000 - int(time.time())) + rt.settings.result_ttl_extra_s)
    request_json, fingerprint = bind_stored_forms(params)
    # Redis field names (deadline, expires_at: milliseconds) stay as stored.
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
    return PreparedBind(key, row)


def commit_prepared(
    rt: Runtime, prepared: Sequence[PreparedBind], outcomes: Sequence[CreateOutcome] | None = None
) -> list[BindHandle | IdempotencyConflictError]:
    """Record (unless ``outcomes`` already tells how that went), publish, mark published."""
    if outcomes is None:
        outcomes = rt.store.create_many([p.row for p in prepared])
    written: list[tuple[str, CreateOutcome]] = []
    out: list[BindHandle | IdempotencyConflictError] = []
    for p, oc in zip(prepared, outcomes, strict=True):
        if not oc.created and oc.fingerprint != p.row["fingerprint"]:
            out.append(IdempotencyConflictError(p.key))
            continue
        written.append((p.key, oc))
        out.append(BindHandle(key=p.key, task_id=p.row["task_id"], created=oc.created, runtime=rt))
    # Bulk enqueues carry many keys per message (AXB_BATCH_SIZE); a single one goes alone.
    publish_missing(rt, written)
    return out
