"""The ``axb.bind`` task: one message carries one idempotency key; the record holds the rest."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from worker import errors, keys
from worker.celery_app import app
from worker.masking import mask_text
from worker.pipeline import run_bind
from worker.runtime import get_runtime

log = logging.getLogger("axb.bind")


@app.task(name="axb.bind", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def bind(self: Task, key: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return handle_message(self, "bind", key, args, kwargs)


def handle_message(self: Task, action: str, key: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """The body of every task (bind, unbind, extend): one key, the record says the rest."""
    rt = get_runtime()
    if not isinstance(key, str) or not key or args or kwargs:
        # Not a message we wrote: keep it for on-call instead of crashing or dropping it.
        rt.redis.xadd(
            keys.DEAD_LETTERS,
            {
                "key": "",
                "task_id": str(self.request.id or ""),
                "code": errors.MALFORMED_MESSAGE,
                "message": f"{action} message must carry exactly one idempotency key",
                "request": "",
                "attempts": "0",
                "action": action,
                "raw": mask_text(repr((key, args, kwargs)))[:2000],
            },
        )
        return {"status": "dead_lettered", "code": errors.MALFORMED_MESSAGE}
    delivery = f"{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    try:
        return run_bind(rt, key, delivery).as_dict()
    except SoftTimeLimitExceeded:
        log.warning("%s key=%s: soft time limit; message requeued", action, key)
        raise Reject("soft time limit", requeue=True) from None
    except Exception as exc:
        # Redis or a bug: never ack a message whose bind is unfinished. Requeue it; the poison
        # counter in the record dead-letters it if this keeps happening.
        log.exception("%s key=%s: unexpected %s; message requeued", action, key, type(exc).__name__)
        raise Reject(str(type(exc).__name__), requeue=True) from exc
