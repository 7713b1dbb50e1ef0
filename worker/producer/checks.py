"""Type checks for the Python API's arguments: a wrong type is an :class:`InvalidRequestError`
naming the argument (``idempotency_key: must be text or None, not int``), never an
``AttributeError`` from deep inside. The value itself is never quoted (it may be a number).

Every public function of :mod:`worker` calls these first, before it touches Redis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from worker.errors import InvalidRequestError

INVALID = "isv.INVALID_PARAMETERS"


def _refuse(name: str, wanted: str, value: Any) -> InvalidRequestError:
    return InvalidRequestError.single(name, INVALID, f"must be {wanted}, not {type(value).__name__}")


def text(name: str, value: Any, *, optional: bool = True) -> str | None:
    """A ``str`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _refuse(name, "text or None" if optional else "text", value)
    return value


def digits_or_text(name: str, value: Any) -> str | int | None:
    """An id or a number that may come as an ``int`` (``SubsId``, ``SecretNo``), or ``None``."""
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _refuse(name, "text, an int or None", value)


def deadline(value: Any) -> datetime | None:
    """``deadline=``: an aware :class:`datetime` or ``None``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise _refuse("deadline", "a timezone-aware datetime or None", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequestError.single("deadline", INVALID, "must be timezone-aware")
    return value


def expiration(value: Any) -> str | datetime:
    """``enqueue_extend``'s new Expiration: ``yyyy-MM-dd HH:mm:ss`` text or a datetime."""
    if isinstance(value, str | datetime):
        return value
    raise _refuse("expiration", "text (yyyy-MM-dd HH:mm:ss) or a datetime", value)


def items(value: Any) -> Iterable[Any]:
    """``enqueue_binds``'s items: an iterable of requests, not one request nor text."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise _refuse("items", "an iterable of requests or (request, idempotency_key) pairs", value)
    return value


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(name, "an int", value)
    if value < 1:
        raise InvalidRequestError.single(name, INVALID, "must be at least 1")
    return value


def seconds(name: str, value: Any, *, optional: bool = True) -> float | None:
    """A finite, non-negative number of seconds (``timeout=None`` waits for ever)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _refuse(name, "a number of seconds" + (" or None" if optional else ""), value)
    if not math.isfinite(value) or value < 0:
        raise InvalidRequestError.single(name, INVALID, "must be a finite number of seconds, 0 or more")
    return float(value)
