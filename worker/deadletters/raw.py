"""Queue items that could not be run, kept as ``axb.MALFORMED_MESSAGE`` dead letters."""

from __future__ import annotations

import time

import redis

from worker import errors, keys
from worker.masking import mask_text
from worker.redis_text import as_text

RAW_KEEP_CHARS = 2048  # what an entry keeps of the item, after masking


def dead_letter_raw(
    client: redis.Redis, *, raw: str, reason: str, queue: str = "", task_id: str = "", action: str = "message"
) -> str:
    """Keep a queue item that could not be run, as one ``axb.MALFORMED_MESSAGE`` entry; its id.

    ``raw`` is masked, then capped to :data:`RAW_KEEP_CHARS` (masking first, so that no number is
    cut in two and left readable). The entry has no key or request: there is nothing to replay.
    """
    return as_text(
        client.xadd(
            keys.DEAD_LETTERS,
            {
                "key": "",
                "task_id": task_id,
                "code": errors.MALFORMED_MESSAGE,
                "message": mask_text(reason)[:500],
                "request": "",
                "attempts": "0",
                "action": action,
                "queue": queue,
                "raw": mask_text(raw[: RAW_KEEP_CHARS + 64])[:RAW_KEEP_CHARS],
                "dead_lettered_at": int(time.time() * 1000),
            },
        )
    )
