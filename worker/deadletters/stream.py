"""The dead-letter stream: :class:`DeadLetters` reads it, and fronts replay, purge and audit.

Entries are appended by :meth:`worker.store.BindStore.dead_letter` in the same Lua script that
marks the record ``dead_lettered``; the stream is never trimmed, so nothing leaves it silently:
an entry leaves by a replay (:mod:`worker.deadletters.replay`), a purge
(:mod:`worker.deadletters.purge`), ``axb forget`` or, past ``AXB_DLQ_RETENTION_DAYS``, the
retention sweep (:mod:`worker.deadletters.retention`), each leaving an audit record. An entry's
``request`` (the phone numbers) is sealed at rest when ``AXB_DATA_KEY`` is set
(:mod:`worker.sealing`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Unpack

import redis

from worker import keys
from worker.deadletters.entry import DeadLetter
from worker.deadletters.purge import drop, purge, read_audit, write_audit
from worker.deadletters.replay import ReplayOptions, ReplayReport, replay
from worker.deadletters.selection import Selection
from worker.redis_text import as_text


class DeadLetters:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def _decode(self, entries: Any) -> list[DeadLetter]:
        out = []
        for eid, fields in entries or []:
            f = {as_text(k): as_text(v) for k, v in fields.items()}
            out.append(DeadLetter.from_stream(as_text(eid), f))
        return out

    def entries(
        self,
        *,
        code: str | None = None,
        pool: str | None = None,
        limit: int = 100,
        since_ms: int | None = None,
    ) -> list[DeadLetter]:
        """Oldest first; filters are applied while scanning, so ``limit`` counts matches."""
        out: list[DeadLetter] = []
        start = f"{since_ms}-0" if since_ms else "-"
        while len(out) < limit:
            batch = self.r.xrange(keys.DEAD_LETTERS, min=start, max="+", count=500)
            if not batch:
                break
            for dl in self._decode(batch):
                if (code is None or dl.code == code) and (pool is None or dl.pool == pool):
                    out.append(dl)
                    if len(out) >= limit:
                        break
            start = "(" + as_text(batch[-1][0])
        return out

    def scan(self, page: int = 1000) -> Iterator[DeadLetter]:
        """Every entry, oldest id first, read ``page`` at a time."""
        start = "-"
        while True:
            batch = self.r.xrange(keys.DEAD_LETTERS, min=start, max="+", count=page)
            if not batch:
                return
            yield from self._decode(batch)
            start = "(" + as_text(batch[-1][0])

    def get(self, entry_id: str) -> DeadLetter | None:
        batch = self.r.xrange(keys.DEAD_LETTERS, min=entry_id, max=entry_id, count=1)
        decoded = self._decode(batch)
        return decoded[0] if decoded else None

    def depth(self) -> int:
        return int(self.r.xlen(keys.DEAD_LETTERS))

    def select(self, sel: Selection, limit: int = 1_000_000) -> list[DeadLetter]:
        if sel.ids:
            return [dl for dl in (self.get(i) for i in sel.ids) if dl is not None]
        return self.entries(code=sel.code, pool=sel.pool, since_ms=sel.since_ms, limit=limit)

    def stats(self, retention_days: float | None = None) -> dict[str, Any]:
        """Total, counts by code and by pool, the age of the oldest entry and, with
        ``retention_days``, when the retention sweep removes it (``oldest_goes_at``, epoch ms)."""
        by_code: Counter[str] = Counter()
        by_pool: Counter[str] = Counter()
        oldest: int | None = None
        start = "-"
        while True:
            batch = self.r.xrange(keys.DEAD_LETTERS, min=start, max="+", count=1000)
            if not batch:
                break
            for dl in self._decode(batch):
                by_code[dl.code] += 1
                by_pool[dl.pool or "-"] += 1
                stamp = dl.dead_lettered_at or int(dl.id.split("-", 1)[0])
                oldest = stamp if oldest is None else min(oldest, stamp)
            start = "(" + as_text(batch[-1][0])
        return {
            "total": sum(by_code.values()),
            "by_code": dict(by_code.most_common()),
            "by_pool": dict(by_pool.most_common()),
            "oldest_age_s": round(time.time() - oldest / 1000, 1) if oldest else None,
            "retention_days": retention_days,
            "oldest_goes_at": (
                oldest + int(retention_days * 86_400_000) if oldest and retention_days else None
            ),
        }

    def replay(
        self,
        entries: list[DeadLetter],
        publish: Callable[[list[str]], None],
        **options: Unpack[ReplayOptions],
    ) -> ReplayReport:
        """Re-enqueue each entry under its own key: :func:`worker.deadletters.replay.replay`
        (options ``rate_qps``, ``force``, ``result_ttl_extra_s``, ``queue``, ``watch_s``)."""
        return replay(self.r, entries, publish, **options)

    def drop(self, entries: Sequence[DeadLetter]) -> int:
        """Delete entries for good, without an audit record: :func:`worker.deadletters.purge.drop`."""
        return drop(self.r, entries)

    def write_audit(self, op: str, entries: Sequence[DeadLetter], count: int, **fields: Any) -> None:
        """One record in the audit stream: :func:`worker.deadletters.purge.write_audit`."""
        write_audit(self.r, op, entries, count, **fields)

    def purge(self, entries: list[DeadLetter], *, selection: str, user: str, host: str) -> int:
        """Delete entries for good, leaving one audit record: :func:`worker.deadletters.purge.purge`."""
        return purge(self.r, entries, selection=selection, user=user, host=host)

    def audit(self, limit: int = 100) -> list[dict[str, str]]:
        """The newest audit records: :func:`worker.deadletters.purge.read_audit`."""
        return read_audit(self.r, limit)

    def newest_id(self) -> str:
        """The id of the newest entry ("0-0" when empty): where a watch starts, fixed before it
        says it is watching, so nothing that arrives after that line is missed."""
        newest: Any = self.r.xrevrange(keys.DEAD_LETTERS, count=1)
        return as_text(newest[0][0]) if newest else "0-0"

    def tail(self, last_id: str = "$", block_ms: int = 1000) -> list[DeadLetter]:
        """New entries after ``last_id`` (blocking up to ``block_ms``), for ``axb dlq watch``."""
        res: Any = self.r.xread({keys.DEAD_LETTERS: last_id}, block=block_ms, count=100)
        out: list[DeadLetter] = []
        for _stream, batch in res or []:
            out.extend(self._decode(batch))
        return out
