"""The dead-letter stream: read it, replay and purge it.

Entries are appended by :meth:`worker.store.BindStore.dead_letter` in the same Lua script that
marks the record ``dead_lettered``; the stream is never trimmed, so nothing leaves it silently:
an entry leaves by a replay, a purge, ``axb forget`` or, past ``AXB_DLQ_RETENTION_DAYS``, the
retention sweep (:mod:`worker.retention`), each leaving an audit record. An entry's ``request``
(the phone numbers) is sealed at rest when ``AXB_DATA_KEY`` is set (:mod:`worker.sealing`).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import redis

from worker import errors, keys, lua
from worker.errors import AxbError
from worker.masking import mask_obj, mask_text
from worker.redis_text import as_text as _s
from worker.sealing import seal, unseal


@dataclass(frozen=True)
class DeadLetter:
    id: str
    key: str
    code: str
    message: str
    request_id: str
    attempts: int
    task_id: str
    pool: str
    first_attempt_at: int | None
    last_attempt_at: int | None
    dead_lettered_at: int | None
    request: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    http_status: int | None = None
    action: str = "bind"
    raw: str = ""
    expires_at: int | None = None
    queue: str = ""  # the queue a malformed item was taken off

    @classmethod
    def from_stream(cls, entry_id: str, f: dict[str, str]) -> DeadLetter:
        def opt_int(name: str) -> int | None:
            v = f.get(name)
            return int(v) if v not in (None, "") else None

        def js(name: str, default: Any) -> Any:
            try:
                return json.loads(f[name]) if f.get(name) else default
            except ValueError:
                return default

        if f.get("request"):
            f = {**f, "request": unseal(f["request"])}

        return cls(
            id=entry_id,
            key=f.get("key", ""),
            code=f.get("code", ""),
            message=f.get("message", ""),
            request_id=f.get("request_id", ""),
            attempts=int(f.get("attempts") or 0),
            task_id=f.get("task_id", ""),
            pool=f.get("pool", ""),
            first_attempt_at=opt_int("first_attempt_at"),
            last_attempt_at=opt_int("last_attempt_at"),
            dead_lettered_at=opt_int("dead_lettered_at") or int(entry_id.split("-", maxsplit=1)[0]),
            request=js("request", {}),
            history=js("history", []),
            http_status=opt_int("http_status"),
            action=f.get("action", "bind") or "bind",
            raw=f.get("raw", ""),
            queue=f.get("queue", ""),
            expires_at=opt_int("expires_at"),
        )

    def as_dict(self, *, show_numbers: bool = False) -> dict[str, Any]:
        out = {
            "id": self.id,
            "key": self.key,
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
            "attempts": self.attempts,
            "task_id": self.task_id,
            "pool": self.pool,
            "action": self.action,
            "http_status": self.http_status,
            "first_attempt_at": self.first_attempt_at,
            "last_attempt_at": self.last_attempt_at,
            "dead_lettered_at": self.dead_lettered_at,
            "request": self.request,
            "history": self.history,
        }
        if self.queue:
            out["queue"] = self.queue
        if self.raw:
            out["raw"] = self.raw
        return out if show_numbers else mask_obj(out)

    def request_expires_ms(self) -> int:
        """The binding's Expiration in epoch ms (from the entry, else from its request)."""
        if self.expires_at:
            return self.expires_at
        from worker.vendor import parse_bind_request

        try:
            return int(parse_bind_request(self.request, check_future=False).expiration.timestamp() * 1000)
        except ValueError:
            return int(time.time() * 1000)


# --- queue items that could not be run -------------------------------------------------------------

RAW_KEEP_CHARS = 2048  # what an entry keeps of the item, after masking


def dead_letter_raw(
    client: redis.Redis, *, raw: str, reason: str, queue: str = "", task_id: str = "", action: str = "message"
) -> str:
    """Keep a queue item that could not be run, as one ``axb.MALFORMED_MESSAGE`` entry; its id.

    ``raw`` is masked, then capped to :data:`RAW_KEEP_CHARS` (masking first, so that no number is
    cut in two and left readable). The entry has no key or request: there is nothing to replay.
    """
    return _s(
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


# --- operations: stats, replay, purge --------------------------------------------------------------


NEEDS_FORCE = frozenset({"axb.AMBIGUOUS_OUTCOME"})


# --- naming entries: ids and --since -----------------------------------------------------------

_ENTRY_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_AGO = re.compile(r"([0-9]{1,15}(?:\.[0-9]{1,6})?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_STREAM_PART = 2**64 - 1
CST = timezone(timedelta(hours=8))


class SelectionError(AxbError, ValueError):
    """A dead-letter id or ``--since`` that names no entry: refused before Redis is asked."""


def parse_entry_id(text: str) -> str:
    """A dead-letter id as Redis streams write them (``1732961234567-0``), or SelectionError."""
    t = text.strip()
    m = _ENTRY_ID.fullmatch(t)
    if m is None or int(m.group(1)) > _MAX_STREAM_PART or int(m.group(2)) > _MAX_STREAM_PART:
        raise SelectionError(
            f"{mask_text(text)[:80]!r} is not a dead-letter id (they look like 1732961234567-0; "
            "see axb dlq list)"
        )
    return t


def parse_since_ms(value: str | None, *, now_s: float | None = None) -> int | None:
    """``--since``: ``90s``, ``10m``, ``2h``, ``3d`` ago, or an ISO date-time (naive = UTC+8), as
    epoch ms (never below 0: ``99999999999d`` means every entry). ``None`` for no bound."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    now = time.time() if now_s is None else now_s
    m = _AGO.fullmatch(text)
    if m is not None:
        return max(0, int((now - float(m.group(1)) * _UNIT_S[m.group(2)]) * 1000))
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=CST)
        return max(0, int(moment.timestamp() * 1000))
    except (ValueError, OverflowError):
        raise SelectionError(
            f"--since {mask_text(text)[:80]!r}: use 90s / 10m / 2h / 3d or an ISO date-time"
            " (2026-11-30 08:00:00, UTC+8 unless it says otherwise)"
        ) from None


@dataclass
class Selection:
    """Which dead letters an operation applies to."""

    ids: tuple[str, ...] = ()
    code: str | None = None
    pool: str | None = None
    since_ms: int | None = None
    all: bool = False

    @property
    def empty(self) -> bool:
        return not (self.ids or self.code or self.pool or self.since_ms is not None or self.all)

    def describe(self) -> str:
        if self.ids:
            return "ids " + ",".join(self.ids)
        parts = [
            f"code={self.code}" if self.code else "",
            f"pool={self.pool}" if self.pool else "",
            f"since={self.since_ms}" if self.since_ms is not None else "",
        ]
        return " ".join(p for p in parts if p) or "all"


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


class DeadLetters:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def _decode(self, entries: Any) -> list[DeadLetter]:
        out = []
        for eid, fields in entries or []:
            f = {_s(k): _s(v) for k, v in fields.items()}
            out.append(DeadLetter.from_stream(_s(eid), f))
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
            start = "(" + _s(batch[-1][0])
        return out

    def scan(self, page: int = 1000) -> Iterator[DeadLetter]:
        """Every entry, oldest id first, read ``page`` at a time."""
        start = "-"
        while True:
            batch = self.r.xrange(keys.DEAD_LETTERS, min=start, max="+", count=page)
            if not batch:
                return
            yield from self._decode(batch)
            start = "(" + _s(batch[-1][0])

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
            start = "(" + _s(batch[-1][0])
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
        *,
        rate_qps: float = 50.0,
        force: bool = False,
        result_ttl_extra_s: int = 86_400,
        queue: str = "axb.bind",
        watch_s: float = 60.0,
    ) -> ReplayReport:
        """Re-enqueue each entry under its own key, at most ``rate_qps`` a second.

        The record goes back to ``pending`` (its history kept), the message is published, and
        only then is the entry deleted from the stream: a crash in between leaves the entry
        where it was. Entries whose outcome is unknown (``axb.AMBIGUOUS_OUTCOME``) need
        ``force``: replaying them may make a second binding.
        """
        report = ReplayReport()
        script = self.r.register_script(lua.source("replay_dead_letter"))
        interval = 1.0 / rate_qps if rate_qps > 0 else 0.0
        for dl in entries:
            if dl.code == errors.MALFORMED_MESSAGE or not dl.key or not dl.request:
                why = "a queue item that could not be run; nothing to replay (see `axb dlq show`)"
                report.skipped.append((dl.id, f"{dl.code}: {why}"))
                continue
            if dl.code in NEEDS_FORCE and not force:
                report.skipped.append((dl.id, f"{dl.code}: reconcile first, then replay with --force"))
                continue
            started = time.monotonic()
            expires_ms = int(dl.request_expires_ms())
            now_ms = int(time.time() * 1000)
            ttl_s = max(3600, (expires_ms - now_ms) // 1000 + result_ttl_extra_s)
            hist = json.dumps({"at": now_ms, "code": "axb.REPLAYED", "from": dl.id, "attempt": 0})
            res = script(
                keys=[keys.bind_record(dl.key), keys.bind_history(dl.key), keys.watch(queue)],
                args=[
                    dl.key,
                    dl.task_id or keys.task_id_for(dl.key),
                    seal(json.dumps(dl.request, ensure_ascii=False)),
                    dl.pool,
                    now_ms,
                    expires_ms,
                    ttl_s,
                    expires_ms - 60_000,
                    dl.action,
                    dl.id,
                    hist,
                    now_ms + int(watch_s * 1000),
                ],
            )
            if int(res) == 3:
                self.r.xdel(keys.DEAD_LETTERS, dl.id)
                report.skipped.append((dl.id, "the key has succeeded since; entry removed"))
                continue
            publish([dl.key])
            self.r.hset(keys.bind_record(dl.key), "published", 1)
            self.r.xdel(keys.DEAD_LETTERS, dl.id)
            report.replayed.append(dl.id)
            spare = interval - (time.monotonic() - started)
            if spare > 0:
                time.sleep(spare)
        return report

    def drop(self, entries: Sequence[DeadLetter]) -> int:
        """Delete entries for good, with their histories and their records' requests (while the
        record still stands for the entry: see ``drop_dead_letter.lua``); returns how many were
        there. No audit record: the callers write theirs."""
        script = self.r.register_script(lua.source("drop_dead_letter"))
        deleted = 0
        now = int(time.time() * 1000)
        for i in range(0, len(entries), 500):
            pipe = self.r.pipeline(transaction=False)
            for dl in entries[i : i + 500]:
                script(
                    keys=[keys.DEAD_LETTERS, keys.bind_record(dl.key), keys.bind_history(dl.key)],
                    args=[dl.id, now, 1 if dl.key else 0],
                    client=pipe,
                )
            deleted += sum(int(n) for n in pipe.execute())
        return deleted

    def write_audit(self, op: str, entries: Sequence[DeadLetter], count: int, **fields: Any) -> None:
        """One record in the audit stream: what, how many, which ids and codes, when (no numbers)."""
        self.r.xadd(
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

    def purge(self, entries: list[DeadLetter], *, selection: str, user: str, host: str) -> int:
        """Delete entries for good (and their histories), leaving one audit record (when, what,
        how many, who, where)."""
        deleted = self.drop(entries)
        self.write_audit("purge", entries, deleted, selection=selection, user=user, host=host)
        return deleted

    def audit(self, limit: int = 100) -> list[dict[str, str]]:
        out = []
        for eid, fields in self.r.xrevrange(keys.DEAD_LETTER_AUDIT, count=limit) or []:
            out.append({"id": _s(eid), **{_s(k): _s(v) for k, v in (fields or {}).items()}})
        return out

    def newest_id(self) -> str:
        """The id of the newest entry ("0-0" when empty): where a watch starts, fixed before it
        says it is watching, so nothing that arrives after that line is missed."""
        newest: Any = self.r.xrevrange(keys.DEAD_LETTERS, count=1)
        return _s(newest[0][0]) if newest else "0-0"

    def tail(self, last_id: str = "$", block_ms: int = 1000) -> list[DeadLetter]:
        """New entries after ``last_id`` (blocking up to ``block_ms``), for ``axb dlq watch``."""
        res: Any = self.r.xread({keys.DEAD_LETTERS: last_id}, block=block_ms, count=100)
        out: list[DeadLetter] = []
        for _stream, batch in res or []:
            out.extend(self._decode(batch))
        return out
