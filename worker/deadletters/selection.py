"""Naming dead letters: entry ids, ``--since`` and the :class:`Selection` an operation applies to."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from worker.errors import AxbError
from worker.masking import mask_text

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
