"""The ``axb.extend`` task: one message carries one operation key (``extend:<key>:<expiration>``);
the record holds the rest. The story is in :mod:`worker.execution.operation`."""

from __future__ import annotations

from typing import Any

from celery import Task

from tasks.bind import handle_message
from worker.celery_app import app


@app.task(name="axb.extend", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def extend(self: Task, key: Any = None, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return handle_message(self, "extend", key, args, kwargs)
