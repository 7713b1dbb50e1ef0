"""``axb rekey``: every sealed field re-sealed under the first key of ``AXB_DATA_KEY``.

It walks every record (``SCAN`` over ``axb:bind:*``, 500 per pipelined round trip) and every
dead letter, and rewrites each value holding personal data (a record's ``request``,
``inflight``, ``result``; a dead letter's ``request``) that is plaintext or sealed under another
key. Each rewrite is a compare-and-set script (``reseal_field.lua``, ``reseal_dead_letter.lua``):
a value that changed meanwhile is left to the writer, which sealed it under the first key
already. It is idempotent (a value under the first key is skipped) and resumable (stopped
half-way, run it again). Then the check value (:func:`worker.sealing.check_data_key`) is
re-sealed and one audit record (``op=rekey``) is written.

Dead letters get new ids (a stream entry cannot change in place); each keeps its
``dead_lettered_at``, from which retention counts, and its record follows the new id. Rotation:
``AXB_DATA_KEY=NEW,OLD``, restart the workers, ``axb rekey``, then ``AXB_DATA_KEY=NEW``.
Turning encryption off again is not supported: without a key nothing sealed can be opened.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from worker import keys, lua
from worker.privacy.scan import PAGE, record_pages
from worker.redis_text import as_text
from worker.sealing import DataKeys, write_check_value

SEALED_RECORD_FIELDS = ("request", "inflight", "result")


@dataclass
class RekeyReport:
    values: int = 0  # record fields rewritten
    dead_letters: int = 0  # dead letters re-added
    changed_meanwhile: int = 0  # left to their writer

    @property
    def total(self) -> int:
        return self.values + self.dead_letters


def rekey(client: Any, dk: DataKeys, *, user: str = "", host: str = "") -> RekeyReport:
    """Re-seal everything under ``dk``'s first key (see the module docstring)."""
    report = RekeyReport()
    reseal_field = client.register_script(lua.source("reseal_field"))
    reseal_dead = client.register_script(lua.source("reseal_dead_letter"))

    def flush(page: list[str]) -> None:
        pipe = client.pipeline(transaction=False)
        for rec in page:
            pipe.hmget(rec, *SEALED_RECORD_FIELDS)
        writes: list[tuple[str, str, str]] = []
        for rec, values in zip(page, pipe.execute(), strict=True):
            for name, raw in zip(SEALED_RECORD_FIELDS, values, strict=True):
                value = as_text(raw)
                if dk.needs_reseal(value):
                    writes.append((rec, name, value))
        if writes:
            pipe = client.pipeline(transaction=False)
            for rec, name, value in writes:
                reseal_field(keys=[rec], args=[name, value, dk.reseal(value)], client=pipe)
            done = sum(int(n) for n in pipe.execute())
            report.values += done
            report.changed_meanwhile += len(writes) - done

    for page in record_pages(client, PAGE):
        flush(page)

    # Dead letters: re-added at the end of the stream, under the first key, so the walk meets
    # them again and skips them.
    start = "-"
    while True:
        batch = client.xrange(keys.DEAD_LETTERS, min=start, max="+", count=PAGE)
        if not batch:
            break
        for raw_id, fields in batch:
            eid = as_text(raw_id)
            f = {as_text(k): as_text(v) for k, v in fields.items()}
            request = f.get("request", "")
            if not dk.needs_reseal(request):
                continue
            new_id = reseal_dead(
                keys=[keys.DEAD_LETTERS, keys.bind_record(f.get("key", ""))],
                args=[eid, request, dk.reseal(request), eid.split("-", 1)[0]],
            )
            if new_id:
                report.dead_letters += 1
            else:
                report.changed_meanwhile += 1
        start = "(" + as_text(batch[-1][0])

    write_check_value(client, dk)
    client.xadd(
        keys.DEAD_LETTER_AUDIT,
        {
            "op": "rekey",
            "count": report.total,
            "records_fields": report.values,
            "dead_letters": report.dead_letters,
            "key_id": dk.first_id or "none",
            "user": user,
            "host": host,
            "at": int(time.time() * 1000),
        },
    )
    return report
