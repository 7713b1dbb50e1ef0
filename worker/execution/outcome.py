"""How a delivery ends: its :class:`Outcome`, the dead letter, the log line and the history entry."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from worker import keys
from worker.metrics import BINDS, LIFECYCLE
from worker.observability import report_dead_letter
from worker.runtime import Runtime
from worker.store import BindRecord, now_ms

log = logging.getLogger("axb.bind")


@dataclass(frozen=True)
class Outcome:
    key: str
    status: str
    code: str = ""
    attempts: int = 0
    # The delivery's lease and start count were already settled (in the succeed script).
    released: bool = False
    # No rate-limit slot within the inline wait: (when the key is due again in ms, the rate and
    # scope of its tightest limit).
    no_slot: tuple[int, float, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status, "code": self.code, "attempts": self.attempts}


def dead_letter(rt: Runtime, key: str, *, code: str, message: str, **kw: Any) -> None:
    """Dead-letter ``key`` (record and stream in one script) and report it once to Sentry."""
    entry_id = rt.store.dead_letter(key, code=code, message=message, **kw)
    if entry_id is None:
        return
    action = keys.action_of(key)
    if action == "bind":
        BINDS.labels("dead_lettered", code).inc()
    else:
        LIFECYCLE.labels(action, "dead_lettered", code).inc()
    rec = rt.store.get(key)
    report_dead_letter(
        key=key,
        code=code,
        message=message,
        pool=rec.pool if rec else "",
        attempts=rec.attempts if rec else 0,
        request_id=str(kw.get("request_id") or ""),
        dlq_id=entry_id,
    )


def finish(rt: Runtime, key: str, latency_ms: float | None = None) -> Outcome:
    """The outcome of ``key`` as its record now says, logged once."""
    rec = rt.store.get(key)
    if rec is None:
        return Outcome(key, "missing")
    log_outcome(rec, latency_ms)
    return Outcome(key, rec.status, rec.code, rec.attempts)


def log_outcome(rec: BindRecord, latency_ms: float | None = None) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(outcome_line(rec, latency_ms))


def log_outcomes(lines: list[str]) -> None:
    """Outcome lines of one message, in one log record (one line, `` | `` between outcomes)."""
    if lines and log.isEnabledFor(logging.INFO):
        log.info(" | ".join(lines))


def outcome_line(rec: BindRecord, latency_ms: float | None = None) -> str:
    """``bind key=… status=… code=… attempts=… latency_ms=… request_id=… pool=…``"""
    latency = f"{latency_ms:.1f}" if latency_ms is not None else "-"
    return (
        f"{rec.action or 'bind'} key={rec.key} status={rec.status} code={rec.code or '-'} "
        f"attempts={rec.attempts} latency_ms={latency} request_id={rec.request_id or '-'} "
        f"pool={rec.pool or '-'}"
    )


def attempt_entry(
    attempt: int,
    code: str,
    request_id: str,
    latency_ms: float,
    replay: bool,
    http_status: int | None = None,
    *,
    rebind: bool = False,
) -> dict[str, Any]:
    """One vendor call, as the record's history keeps it (``rebind``: a bind signed afresh after
    an ambiguous first copy, see :mod:`.ambiguous`)."""
    at = now_ms()
    entry: dict[str, Any] = {
        "attempt": attempt,
        "at": at,
        # When the request went out (the answer came latency_ms later).
        "sent_at": at - round(latency_ms),
        "code": code,
        "request_id": request_id,
        "latency_ms": round(latency_ms, 1),
        "replay": replay,
        "http_status": http_status,
    }
    if rebind:
        entry["rebind"] = True
    return entry
