"""Removing dead letters for good (a purge, the retention sweep, ``axb forget``) and the audit
stream that records every removal.

An entry goes with its history and its record's request (while the record still stands for
the entry: see ``drop_dead_letter.lua``); each operation writes one audit record (when, what,
how many, which ids and codes, who, where), never a phone number.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import redis

from worker import keys, lua
from worker.deadletters.entry import DeadLetter
from worker.redis_text import as_text


def drop(client: redis.Redis, entries: Sequence[DeadLetter]) -> int:
    """Delete entries for good, with their histories and their records' requests (while the
    record still stands for the entry: see ``drop_dead_letter.lua``); returns how many were
    there. No audit record: the callers write theirs."""
    script = client.register_script(lua.source("drop_dead_letter"))
    deleted = 0
    now = int(time.time() * 1000)
    for i in range(0, len(entries), 500):
        pipe = client.pipeline(transaction=False)
        for dl in entries[i : i + 500]:
            script(
                keys=[keys.DEAD_LETTERS, keys.bind_record(dl.key), keys.bind_history(dl.key)],
                args=[dl.id, now, 1 if dl.key else 0],
                client=pipe,
            )
        deleted += sum(int(n) for n in pipe.execute())
    return deleted


def write_audit(
    client: redis.Redis, op: str, entries: Sequence[DeadLetter], count: int, **fields: Any
) -> None:
    """One record in the audit stream: what, how many, which ids and codes, when (no numbers)."""
    client.xadd(
        keys.DEAD_LETTER_AUDIT,
        {
            "op": op,
            "count": count,
            "at": int(time.time() * 1000),
            "ids": json.dumps([dl.id for dl in entries][:1000]),
            "codes": json.dumps(dict(Counter(dl.code for dl in entries))),
            **{k: str(v) for k, v in fields.items()},
        },
    )


def purge(client: redis.Redis, entries: Sequence[DeadLetter], *, selection: str, user: str, host: str) -> int:
    """Delete entries for good (and their histories), leaving one audit record (when, what,
    how many, who, where)."""
    deleted = drop(client, entries)
    write_audit(client, "purge", entries, deleted, selection=selection, user=user, host=host)
    return deleted


def read_audit(client: redis.Redis, limit: int = 100) -> list[dict[str, str]]:
    """The newest ``limit`` audit records, newest first."""
    out = []
    for eid, fields in client.xrevrange(keys.DEAD_LETTER_AUDIT, count=limit) or []:
        out.append({"id": as_text(eid), **{as_text(k): as_text(v) for k, v in (fields or {}).items()}})
    return out
