"""The record store: bind and operation records in Redis, every change one Lua script.

Modules: ``records`` (statuses, :class:`BindRecord`, the clock), ``creation`` (creating records,
pipelined), ``delivery`` (start, begin attempt, succeed, schedule, dead letter), ``operations``
(unbind/extend writes), ``base`` (connection, scripts, reads), ``bind_store`` (:class:`BindStore`,
all of them); the scripts are in ``lua/``. Import from here, not from the modules.
"""

from worker.store.bind_store import BindStore
from worker.store.creation import CreateOutcome, PendingCreates
from worker.store.delivery import (
    START_BUSY,
    START_DELAYED,
    START_GO,
    START_MISSING,
    START_TERMINAL,
    Begin,
    Start,
    StartOutcome,
    attempt_number,
)
from worker.store.operations import Cancel, OpCreateOutcome
from worker.store.records import (
    CANCELLED,
    DEAD_LETTERED,
    PENDING,
    RETRYING,
    SUCCEEDED,
    TERMINAL,
    BindRecord,
    Status,
    now_ms,
)

__all__ = [
    "CANCELLED",
    "DEAD_LETTERED",
    "PENDING",
    "RETRYING",
    "START_BUSY",
    "START_DELAYED",
    "START_GO",
    "START_MISSING",
    "START_TERMINAL",
    "SUCCEEDED",
    "TERMINAL",
    "Begin",
    "BindRecord",
    "BindStore",
    "Cancel",
    "CreateOutcome",
    "OpCreateOutcome",
    "PendingCreates",
    "Start",
    "StartOutcome",
    "Status",
    "attempt_number",
    "now_ms",
]
