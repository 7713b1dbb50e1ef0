"""Celery's events from our workers (``AXB_TASK_EVENTS=true``): what Flower and ``celery events``
see, with every phone number masked.

A task event carries text that Celery writes from the task: ``args``/``kwargs`` (the message's
``argsrepr``/``kwargsrepr``, which :mod:`worker.queue.publish` already masks, but a message
published by anyone else, ``app.send_task("axb.bind", ["13800000000"])``, carries Celery's plain
``repr``), ``result`` (the task's return value), ``exception`` and ``traceback``.
:class:`MaskingDispatcher` is the one place every event of the process goes through before it
is published: it masks each such text field (:func:`worker.masking.mask_text`). Identity fields
(task id, node name, task name, times) are left as they are, so that monitors can match events.

The Celery app uses it through :class:`Events` (``Celery(events=...)``), so task events from the
pool, the worker's heartbeats and anything else the worker sends are all covered.
"""

from __future__ import annotations

from typing import Any

from celery.app.events import Events as CeleryEvents
from celery.events.dispatcher import EventDispatcher

from worker.masking import mask_text

# Fields that name or time something: never personal data, and monitors match events on them.
IDENTITY_FIELDS = frozenset(
    {
        "type",
        "hostname",
        "uuid",
        "name",
        "root_id",
        "parent_id",
        "eta",
        "expires",
        "sw_ident",
        "sw_ver",
        "sw_sys",
    }
)


def masked_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with every text field that is not an identity field masked."""
    return {
        k: mask_text(v) if isinstance(v, str) and k not in IDENTITY_FIELDS else v for k, v in fields.items()
    }


class MaskingDispatcher(EventDispatcher):  # type: ignore[misc]
    """Celery's event dispatcher, masking phone numbers in every event it sends."""

    # Both ways in: ``send`` (the worker's events, buffered or not) and ``publish`` (Celery's
    # producer sends ``task-sent`` through it directly).
    def send(self, type: str, *args: Any, **fields: Any) -> Any:
        return super().send(type, *args, **masked_fields(fields))

    def publish(self, type: str, fields: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return super().publish(type, masked_fields(fields), *args, **kwargs)


class Events(CeleryEvents):  # type: ignore[misc]
    """The app's events: Celery's, dispatched by :class:`MaskingDispatcher`."""

    dispatcher_cls = f"{__name__}:MaskingDispatcher"
