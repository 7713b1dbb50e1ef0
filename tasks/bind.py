"""The bind tasks: ``axb.bind`` carries one idempotency key, ``axb.bind_many`` (bulk enqueues, the
delay pump) up to ``AXB_BATCH_SIZE``; each key's record holds the rest."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from worker import errors
from worker.celery_app import app
from worker.deadletters import dead_letter_raw
from worker.execution import deliver, deliver_many
from worker.runtime import get_runtime

log = logging.getLogger("axb.bind")


@app.task(name="axb.bind", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def bind(self: Task, key: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return handle_message(self, "bind", key, args, kwargs)


@app.task(name="axb.bind_many", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def bind_many(self: Task, key_list: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Many bind keys in one message (bulk enqueues and the delay queue): each key is worked on
    exactly as ``axb.bind`` would, one after the other."""
    rt = get_runtime()
    if (
        not isinstance(key_list, list)
        or not key_list
        or not all(isinstance(k, str) and k for k in key_list)
        or args
        or kwargs
    ):
        _malformed(rt, self, "bind_many", (key_list, args, kwargs), "must carry a list of idempotency keys")
        return {"status": "dead_lettered", "code": errors.MALFORMED_MESSAGE}
    delivery = f"{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    try:
        outcomes = deliver_many(rt, key_list, delivery)
    except SoftTimeLimitExceeded:
        log.warning("bind_many of %d keys: soft time limit; message requeued", len(key_list))
        raise Reject("soft time limit", requeue=True) from None
    except Exception as exc:
        # As for one key: keys already finished are terminal and are skipped when it comes back.
        log.exception(
            "bind_many of %d keys: unexpected %s; message requeued", len(key_list), type(exc).__name__
        )
        raise Reject(str(type(exc).__name__), requeue=True) from exc
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {"keys": len(key_list), "statuses": counts}


def _malformed(rt: Any, self: Task, action: str, raw: Any, what: str) -> None:
    """Not a message we wrote: keep it for on-call instead of crashing or dropping it."""
    dead_letter_raw(
        rt.redis,
        raw=repr(raw),
        reason=f"{action} message {what}",
        queue=str((self.request.delivery_info or {}).get("routing_key") or ""),
        task_id=str(self.request.id or ""),
        action=action,
    )


def handle_message(self: Task, action: str, key: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """The body of every task (bind, unbind, extend): one key, the record says the rest."""
    rt = get_runtime()
    if not isinstance(key, str) or not key or args or kwargs:
        _malformed(rt, self, action, (key, args, kwargs), "must carry exactly one idempotency key")
        return {"status": "dead_lettered", "code": errors.MALFORMED_MESSAGE}
    delivery = f"{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    try:
        return deliver(rt, key, delivery).as_dict()
    except SoftTimeLimitExceeded:
        log.warning("%s key=%s: soft time limit; message requeued", action, key)
        raise Reject("soft time limit", requeue=True) from None
    except Exception as exc:
        # Redis or a bug: never ack a message whose bind is unfinished. Requeue it; the poison
        # counter in the record dead-letters it if this keeps happening.
        log.exception("%s key=%s: unexpected %s; message requeued", action, key, type(exc).__name__)
        raise Reject(str(type(exc).__name__), requeue=True) from exc
