"""The ``axb.callback`` task: one message carries one delivery key (``callback:<key>@<ms>``); its
record holds the rest. The story is in :mod:`worker.callbacks`.

Acknowledged on receipt: the delivery record, its lease and the watchdog (not the message) make
it durable, so a worker that dies mid-delivery holds it up only until its lease runs out."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task

from worker import errors, keys
from worker.callbacks import deliver
from worker.celery_app import app
from worker.masking import mask_text
from worker.runtime import get_runtime

log = logging.getLogger("axb.callback")


@app.task(name="axb.callback", bind=True, acks_late=False, ignore_result=True, max_retries=None)
def callback(self: Task, key: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    rt = get_runtime()
    if not isinstance(key, str) or not key.startswith(keys.CALLBACK_PREFIX) or args or kwargs:
        rt.redis.xadd(
            keys.DEAD_LETTERS,
            {
                "key": "",
                "task_id": str(self.request.id or ""),
                "code": errors.MALFORMED_MESSAGE,
                "message": "callback message must carry exactly one delivery key",
                "request": "",
                "attempts": "0",
                "action": "callback",
                "raw": mask_text(repr((key, args, kwargs)))[:2000],
            },
        )
        return {"status": "dead_lettered", "code": errors.MALFORMED_MESSAGE}
    token = f"{self.request.hostname}:{self.request.id}:{uuid.uuid4().hex[:8]}"
    try:
        return {"key": key, "status": deliver(rt, key, token)}
    except Exception as exc:
        # Redis down or a bug: the delivery record is still there, watched; the watchdog
        # publishes it again once its lease has run out.
        log.exception("callback %s: unexpected %s; left to the watchdog", key, type(exc).__name__)
        return {"key": key, "status": "error"}
