"""Dead letters keep personal data for ``AXB_DLQ_RETENTION_DAYS`` (default 30), then go.

Every worker's delay pump (:class:`worker.queue.Pump`) calls :meth:`Retention.sweep` about once
a minute (``AXB_DLQ_RETENTION_SWEEP_S``); a lock (:data:`worker.keys.DLQ_RETENTION_LOCK`, held for
the sweep period) lets one pump of the cluster sweep at a time. An entry whose
``dead_lettered_at`` is older than the retention is removed with its history and its record's
request (:func:`worker.deadletters.purge.drop`), never silently: each sweep that removes
anything appends one audit record (``op=retention``: count, ids, codes) to ``axb:dlq:audit``,
logs a line and counts the entries in ``axb_dead_letters_expired_total``.

A sweep reads the whole stream (``XRANGE`` in pages of 1,000): entries re-sealed by ``axb rekey``
get new ids but keep their ``dead_lettered_at``, so the ids alone do not say which are old.
That is about 0.12 s of client time per 10,000 dead letters, once per sweep period for the
cluster.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from worker import keys
from worker.deadletters.entry import DeadLetter
from worker.deadletters.stream import DeadLetters

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
PAGE = 1000
MAX_PER_SWEEP = 10_000


class Retention:
    """Removes dead letters older than ``retention_days``, one cluster-wide sweep at a time."""

    def __init__(self, client: Any, retention_days: float, *, every_s: float = 60.0) -> None:
        self.r = client
        self.retention_ms = int(retention_days * DAY_MS)
        self.every_ms = int(every_s * 1000)
        self.dead = DeadLetters(client)

    def expired(self, now_ms: int | None = None, limit: int = MAX_PER_SWEEP) -> list[DeadLetter]:
        """Entries past their retention, oldest id first (at most ``limit``)."""
        cutoff = (now_ms if now_ms is not None else int(time.time() * 1000)) - self.retention_ms
        out: list[DeadLetter] = []
        for dl in self.dead.scan(PAGE):
            if (dl.dead_lettered_at or 0) < cutoff:
                out.append(dl)
                if len(out) >= limit:
                    break
        return out

    def sweep(self, now_ms: int | None = None, *, force: bool = False) -> int:
        """Remove the dead letters past their retention; returns how many went. Skipped (0) when
        another pump swept within the period (unless ``force``)."""
        if not force and not self.r.set(keys.DLQ_RETENTION_LOCK, os.getpid(), nx=True, px=self.every_ms):
            return 0
        old = self.expired(now_ms)
        if not old:
            return 0
        # Imported when used, as the watchdog does: the Celery app imports this package, and
        # prometheus-client's multi-process mode (prefork) needs PROMETHEUS_MULTIPROC_DIR set
        # before the first metric is made, which `axb worker` does after that import.
        from worker.metrics import DEAD_LETTERS_EXPIRED

        removed = self.dead.drop(old)
        days = self.retention_ms / DAY_MS
        self.dead.write_audit("retention", old, removed, retention_days=f"{days:g}", user="axb-worker")
        DEAD_LETTERS_EXPIRED.inc(removed)
        log.info(
            "dead-letter retention: removed %d entr%s older than %g days (audit record in %s)",
            removed,
            "y" if removed == 1 else "ies",
            days,
            keys.DEAD_LETTER_AUDIT,
        )
        return removed
