"""The dead-letter stream: read it, and (later issues) replay and purge it.

Entries are appended by :meth:`worker.store.BindStore.dead_letter` in the same Lua script that
marks the record ``dead_lettered``; the stream is never trimmed, so nothing leaves it silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import redis

from worker import keys
from worker.masking import mask_obj


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
        if self.raw:
            out["raw"] = self.raw
        return out if show_numbers else mask_obj(out)


class DeadLetters:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def _decode(self, entries: Any) -> list[DeadLetter]:
        out = []
        for eid, fields in entries or []:
            f = {_s(k): _s(v) for k, v in fields.items()}
            out.append(DeadLetter.from_stream(_s(eid), f))
        return out

    def list(
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

    def get(self, entry_id: str) -> DeadLetter | None:
        batch = self.r.xrange(keys.DEAD_LETTERS, min=entry_id, max=entry_id, count=1)
        decoded = self._decode(batch)
        return decoded[0] if decoded else None

    def depth(self) -> int:
        return int(self.r.xlen(keys.DEAD_LETTERS))


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
