"""axb-bind-worker: bind Dypls privacy numbers through a reliable, rate-limited task queue.

Producer API::

    from worker import enqueue_bind
    handle = enqueue_bind({"PoolKey": "FC100000001", "PhoneNoA": "13800000000",
                           "PhoneNoB": "13900000000", "Expiration": "2026-12-01 12:00:00",
                           "OutId": "trip-42"})
    result = handle.result(timeout=10)      # BindResult: status, state, dto (SecretBindDTO), code

    enqueue_extend("trip-42", "2026-12-01 14:00:00")   # the trip runs late
    enqueue_unbind("trip-42").result(timeout=10)        # the trip ended: the X number is free
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "BindHandle",
    "BindResult",
    "BulkResult",
    "LifecycleHandle",
    "LifecycleResult",
    "PartialEnqueueError",
    "enqueue_bind",
    "enqueue_binds",
    "enqueue_extend",
    "enqueue_unbind",
    "get_op_result",
    "get_result",
]

if TYPE_CHECKING:
    from worker.producer import (
        BindHandle,
        BindResult,
        BulkResult,
        LifecycleHandle,
        LifecycleResult,
        PartialEnqueueError,
        enqueue_bind,
        enqueue_binds,
        enqueue_extend,
        enqueue_unbind,
        get_op_result,
        get_result,
    )


def __getattr__(name: str) -> Any:
    # Lazy, so `import worker.settings` (the simulator, the CLI) does not import Celery.
    if name in __all__:
        from worker import producer

        return getattr(producer, name)
    raise AttributeError(name)
