"""The bind record store: one Redis hash per idempotency key, the source of truth for a bind.

Every state change is one Lua script (``lua/``), so a record, the delay queue and the dead-letter
stream never disagree. Terminal states are final: no script moves a record out of them (a replay
is an explicit, audited operation of the dead-letter module). Lifecycle operations (unbind,
extend; see :mod:`worker.store.operations`) are records too, with the same statuses, retries,
delay queue, watchdog and dead letters.
"""

from __future__ import annotations

from worker.store.creation import Creation
from worker.store.delivery import Delivery
from worker.store.operations import Operations


class BindStore(Creation, Delivery, Operations):
    """Typed access to bind and operation records; every mutation is atomic.

    Its parts: :class:`~worker.store.creation.Creation` (producer side),
    :class:`~worker.store.delivery.Delivery` (worker side),
    :class:`~worker.store.operations.Operations` (unbind, extend), over
    :class:`~worker.store.base.StoreBase` (connection, scripts, reads)."""
