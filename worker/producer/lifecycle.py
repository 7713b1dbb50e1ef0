"""Enqueue trip lifecycle operations: :func:`enqueue_unbind` (trip ends: release the X number) and
:func:`enqueue_extend` (trip runs late: move the Expiration), one by one or many at once.

They have the guarantees of a bind; see :mod:`worker.execution`. An unbind that arrives while
its bind is still queued or retrying cancels it if none of its requests can have bound (the
bind ends ``cancelled`` and is never bound later), or else waits for it and unbinds what it made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker import errors, keys
from worker.errors import AxbError, InvalidRequestError
from worker.producer import checks
from worker.producer.binds import EXPIRATION_MARGIN_MS, callback_fields, url_checker
from worker.producer.commit import is_new, publish_missing
from worker.producer.handles import LifecycleHandle
from worker.producer.idempotency import check_key
from worker.producer.results import LifecycleResult
from worker.runtime import Runtime, get_runtime
from worker.store import BindRecord, now_ms
from worker.vendor import (
    UnbindSubscriptionRequest,
    format_expiration,
    parse_expiration,
    parse_request,
    to_cst,
)

# An unbind given only by SubsId (no bind record) may be retried for this long.
UNBIND_BY_SUBS_WINDOW_MS = 86_400_000


def commit_ops(rt: Runtime, rows: Sequence[dict[str, Any]]) -> list[LifecycleHandle]:
    """Record operation rows, publish what needs a message, mark published; their handles."""
    outcomes = rt.store.create_ops(rows)
    publish_missing(rt, [(row["key"], oc) for row, oc in zip(rows, outcomes, strict=True)], batch=False)
    return [
        LifecycleHandle(
            key=row["key"],
            action=row["action"],
            target=row["target"],
            task_id=row["task_id"],
            created=is_new(oc),
            runtime=rt,
        )
        for row, oc in zip(rows, outcomes, strict=True)
    ]


def op_row(
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


def prepare_unbind(
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
        check_key(key)
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
        expires_ms = rec.expires_at_ms if rec is not None else now + UNBIND_BY_SUBS_WINDOW_MS
        return op_row(
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
    return op_row(
        rt,
        op_key=keys.unbind_subs_op(explicit["PoolKey"], explicit["SubsId"]),
        action="unbind",
        target="",
        request=explicit,
        pool=explicit["PoolKey"],
        deadline_ms=now + UNBIND_BY_SUBS_WINDOW_MS,
        expires_ms=now + UNBIND_BY_SUBS_WINDOW_MS,
    )


def prepare_extend(rt: Runtime, key: str, rec: BindRecord | None, expiration: Any) -> dict[str, Any]:
    key = (key or "").strip()
    check_key(key)
    moment = parse_expiration(expiration)
    if rec is None or rec.action != "bind":
        raise InvalidRequestError.single(
            "IdempotencyKey",
            errors.UNKNOWN_KEY,
            "no bind with this key (never enqueued, or its result expired)",
        )
    cst = to_cst(moment)
    expires_ms = int(cst.timestamp() * 1000)
    return op_row(
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
    checks.text("key", key)
    checks.digits_or_text("subs_id", subs_id)
    checks.text("pool_key", pool_key)
    checks.digits_or_text("secret_no", secret_no)
    rt = get_runtime()
    rec = rt.store.get(key.strip()) if key else None
    row = prepare_unbind(rt, key, rec, subs_id=subs_id, pool_key=pool_key, secret_no=secret_no)
    row.update(callback_fields(url_checker(rt), callback_url, callback_numbers))
    return commit_ops(rt, [row])[0]


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
    checks.text("key", key, optional=False)
    checks.expiration(expiration)
    rt = get_runtime()
    rec = rt.store.get(key.strip()) if key else None
    row = prepare_extend(rt, key, rec, expiration)
    row.update(callback_fields(url_checker(rt), callback_url, callback_numbers))
    return commit_ops(rt, [row])[0]


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
                    prepare_unbind(
                        rt,
                        target or None,
                        rec,
                        subs_id=blank_is_none(fields.get("SubsId")),
                        pool_key=blank_is_none(fields.get("PoolKey")),
                        secret_no=blank_is_none(fields.get("SecretNo")),
                    )
                )
            elif action == "extend":
                rows.append(prepare_extend(rt, target, rec, fields.get("Expiration")))
            else:
                raise InvalidRequestError.single(
                    "Action", "isv.INVALID_PARAMETERS", "must be bind, unbind or extend"
                )
        except AxbError as err:
            out.rejected.append((i, err))
    if rows:
        out.handles.extend(commit_ops(rt, rows))
    return out


def blank_is_none(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value).strip()


def get_op_result(key: str) -> LifecycleResult | None:
    """An unbind's or extend's result by its key (``handle.key``: ``unbind:<key>``, …)."""
    checks.text("key", key, optional=False)
    rec = get_runtime().store.get(key)
    return LifecycleResult.from_record(rec) if rec else None
