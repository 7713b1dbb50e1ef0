"""Commit: after the records are written, publish the messages that may be missing, then mark them.

One rule for binds and operations: a new record (or a re-armed operation), or one whose message
may never have been published (the producer died between the two steps), is published. A
duplicate message is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.runtime import Runtime
from worker.store import TERMINAL, CreateOutcome, OpCreateOutcome


def is_new(outcome: CreateOutcome | OpCreateOutcome) -> bool:
    """Did this enqueue make the record (or re-arm an operation)?"""
    return outcome.created or (isinstance(outcome, OpCreateOutcome) and outcome.rearmed)


def needs_publish(outcome: CreateOutcome | OpCreateOutcome) -> bool:
    return is_new(outcome) or (not outcome.published and outcome.status not in TERMINAL)


def publish_missing(
    rt: Runtime,
    written: Sequence[tuple[str, CreateOutcome | OpCreateOutcome]],
    *,
    batch: bool | None = None,
) -> None:
    """Publish and mark the keys of ``written`` (key, outcome) that need a message.

    ``batch``: many keys per message (AXB_BATCH_SIZE); by default when there is more than one.
    """
    to_publish = [key for key, outcome in written if needs_publish(outcome)]
    if to_publish:
        rt.publish(to_publish, batch=len(to_publish) > 1 if batch is None else batch)
        rt.store.mark_published(to_publish)
