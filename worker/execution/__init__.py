"""Execution: what a worker does with one delivery of a record (bind, unbind or extend).

One delivery path (:mod:`.delivery`: start → poison check → :mod:`.bind`, or an operation
(:mod:`.operation`, deciding in :mod:`.unbind` / :mod:`.extend`) → finish) and one failure path
(:mod:`.failure`: triage of vendor errors, retry plan, dead letters), with the hold (:mod:`.hold`,
its state; :mod:`.hold_gate`, a delivery passing it) and the cluster status on-call reads
(:mod:`.status`).

Other packages import from here only. The hold and the status are loaded at once (the store
reads :class:`Hold` in its start script, the runtime builds :class:`Holds`); the delivery path,
which itself needs the store and the runtime, is loaded on first use (as ``worker/__init__.py``
does), so that importing the store first never meets a half-made package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from worker.execution.hold import ACCOUNT, ACCOUNT_REFUSED, VENDOR, Hold, Holds, holds_in_force
from worker.execution.status import cluster_status, describe_holds, log_if_full, redis_memory

__all__ = [
    "ACCOUNT",
    "ACCOUNT_REFUSED",
    "VENDOR",
    "Hold",
    "Holds",
    "Outcome",
    "cluster_status",
    "deliver",
    "deliver_many",
    "describe_holds",
    "full_jitter",
    "holds_in_force",
    "log_if_full",
    "redis_memory",
]

# Name → the module that defines it, loaded on first use.
_LAZY = {
    "deliver": "worker.execution.delivery",
    "deliver_many": "worker.execution.delivery",
    "Outcome": "worker.execution.outcome",
    "full_jitter": "worker.execution.failure",
}

if TYPE_CHECKING:
    from worker.execution.delivery import deliver, deliver_many
    from worker.execution.failure import full_jitter
    from worker.execution.outcome import Outcome


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'worker.execution' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
