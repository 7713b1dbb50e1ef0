"""One dead letter as read from the stream: :class:`DeadLetter`."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from worker.masking import mask_obj
from worker.sealing import unseal


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
    expires_at_ms: int | None = None  # stream field "expires_at"
    queue: str = ""  # the queue a malformed item was taken off
    # An ambiguous bind's first copy, as the possible-orphans ledger has it (worker.orphans):
    # {"nonce", "request_id", "sent_at"}; empty for other entries.
    first_copy: dict[str, Any] = field(default_factory=dict)

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
            expires_at_ms=opt_int("expires_at"),
            first_copy=first_copy_of(js("extra", {})),
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
        if self.first_copy:  # an ambiguous bind's first copy: where on-call looks for its binding
            out["first_copy"] = self.first_copy
        if self.queue:
            out["queue"] = self.queue
        if self.raw:
            out["raw"] = self.raw
        return out if show_numbers else mask_obj(out)

    def request_expires_ms(self) -> int:
        """The binding's Expiration in epoch ms (from the entry, else from its request)."""
        if self.expires_at_ms:
            return self.expires_at_ms
        from worker.vendor import parse_bind_request

        try:
            return int(parse_bind_request(self.request, check_future=False).expiration.timestamp() * 1000)
        except ValueError:
            return int(time.time() * 1000)


def first_copy_of(extra: Any) -> dict[str, Any]:
    """The ``first_copy`` an ambiguous bind's dead letter keeps in its ``extra`` ({} if none)."""
    first = extra.get("first_copy") if isinstance(extra, dict) else None
    return dict(first) if isinstance(first, dict) else {}
