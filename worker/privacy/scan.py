"""Walking every record for a privacy operation (``axb rekey``, ``axb forget``), a page at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from worker import keys
from worker.redis_text import as_text

PAGE = 500


def record_pages(client: Any, page: int = PAGE) -> Iterator[list[str]]:
    """Every record key (``SCAN`` over ``axb:bind:*``), ``page`` at a time, for one pipelined
    round trip each."""
    keys_seen: list[str] = []
    for rec in client.scan_iter(match=keys.BIND_RECORD_PATTERN, count=1000, _type="HASH"):
        keys_seen.append(as_text(rec))
        if len(keys_seen) >= page:
            yield keys_seen
            keys_seen = []
    if keys_seen:
        yield keys_seen
