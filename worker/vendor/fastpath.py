"""BindAxb without pydantic: the bulk producers' fast path (:func:`bind_params`).

``axb backfill`` validates a hundred thousand rows at a time; pydantic's machinery around the
validators (and ``model_dump``) cost more than the checks themselves. :func:`bind_params`
applies the very checks BindAxbRequest's fields declare (read from the model, so a rule is never
restated here), to the same fields, and returns what ``to_json_dict()`` would; whenever it is
not sure the row is valid it returns None and the caller asks
:func:`~worker.vendor.parse_bind_request`, which then accepts it or raises the one error
everybody sees. So the fast path only ever *accepts*: every refusal, with its fields, codes and
reasons, still comes from pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BeforeValidator
from pydantic.fields import FieldInfo

from worker.vendor.fields import (
    CST,
    NUMBER,
    PLAIN_ID,
    POOL_KEY,
    call_timeout_warning,
    check_call_timeout,
    check_lead,
    format_expiration,
    is_blank,
    read_expiration,
)
from worker.vendor.requests import BindAxbRequest

Check = Callable[[Any], Any]


class _NotFast(Exception):
    """A value the fast path leaves to pydantic (it may warn, or be refused)."""


def _call_timeout_without_warning(v: Any) -> int | None:
    """:func:`check_call_timeout`, leaving to pydantic a value that earns a CallTimeoutWarning."""
    seconds = check_call_timeout(v)
    if call_timeout_warning(seconds) is not None:
        raise _NotFast
    return seconds


# The fields whose check is a model-level ``field_validator`` rather than a type's
# BeforeValidator: Expiration (None) is handled inline (parse cache, future check).
_OWN_CHECKS: dict[str, Check | None] = {
    "expiration": None,
    "call_timeout": _call_timeout_without_warning,
}


def _declared_check(name: str, info: FieldInfo) -> Check | None:
    """The check BindAxbRequest applies to field ``name``: its type's BeforeValidator."""
    if name in _OWN_CHECKS:
        return _OWN_CHECKS[name]
    for meta in info.metadata:
        if isinstance(meta, BeforeValidator):
            check: Check = meta.func  # type: ignore[assignment]
            return check
    # pragma: no cover - a new BindAxbRequest field needs a typed check or an _OWN_CHECKS entry
    raise RuntimeError(f"worker.vendor.fastpath does not know how BindAxbRequest checks {name}")


# BindAxbRequest's fields in declaration order (the order of ``to_json_dict``): name, API name, check.
_FAST_FIELDS: tuple[tuple[str, str, Check | None], ...] = tuple(
    (name, info.alias or name, _declared_check(name, info))
    for name, info in BindAxbRequest.model_fields.items()
)
# A text value that matches its field's pattern here is what the field's check returns unchanged
# (no whitespace to strip, nothing to normalise); anything else goes through the check.
_FAST_PLAIN: dict[str, re.Pattern[str]] = {
    "PoolKey": POOL_KEY,
    "PhoneNoA": NUMBER,
    "PhoneNoB": NUMBER,
    "PhoneNoX": NUMBER,
    "OutId": PLAIN_ID,
    "OutOrderId": PLAIN_ID,
    "ASRModelId": PLAIN_ID,
}
# Input key (API name or field name) -> (API name, position, check, plain pattern).
_FastSpec = tuple[str, int, Check | None, re.Pattern[str] | None]
_FAST_KEYS: dict[str, _FastSpec] = {
    **{
        alias: (alias, i, check, _FAST_PLAIN.get(alias))
        for i, (_name, alias, check) in enumerate(_FAST_FIELDS)
    },
    **{
        name: (alias, i, check, _FAST_PLAIN.get(alias)) for i, (name, alias, check) in enumerate(_FAST_FIELDS)
    },
}
_FAST_POSITION = {alias: i for i, (_name, alias, _check) in enumerate(_FAST_FIELDS)}
_FAST_EXPIRATION = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
# Expiration value -> (the aware UTC+8 datetime, its text as sent, epoch ms). The rows of a file
# mostly share a few expirations; the cache is dropped whole when it grows large.
_expiration_cache: dict[str, tuple[datetime, str, int]] = {}
_EXPIRATION_CACHE_MAX = 4096


def _fast_moment(value: Any) -> tuple[datetime, str, int]:
    """What the Expiration validator makes of ``value``, before its future check."""
    if isinstance(value, str):
        hit = _expiration_cache.get(value)
        if hit is not None:
            return hit
        if is_blank(value):
            raise _NotFast
        m = _FAST_EXPIRATION.fullmatch(value.strip())
        if m is not None:
            # Zero-padded fields in range read as strptime(EXPIRATION_FORMAT) reads them; out of
            # range, datetime() raises and pydantic decides.
            y, mo, d, h, mi, sec = map(int, m.groups())
            moment = datetime(y, mo, d, h, mi, sec, tzinfo=CST)
        else:
            moment = read_expiration(value)
        facts = (moment, format_expiration(moment), int(moment.timestamp() * 1000))
        if len(_expiration_cache) >= _EXPIRATION_CACHE_MAX:
            _expiration_cache.clear()
        _expiration_cache[value] = facts
        return facts
    if is_blank(value):
        raise _NotFast
    moment = read_expiration(value)
    return moment, format_expiration(moment), int(moment.timestamp() * 1000)


def bind_params(
    data: Any, *, check_future: bool = True, now: datetime | None = None
) -> tuple[dict[str, Any], int] | None:
    """``(to_json_dict(), Expiration in epoch ms)`` of the request that
    ``parse_bind_request(data, check_future=..., now=...)`` returns for the mapping ``data``, or
    None when that call may refuse it (or warn): then make it.

    Never raises, and never accepts what :func:`~worker.vendor.parse_bind_request` refuses.
    """
    if type(data) is not dict and not isinstance(data, Mapping):
        return None
    try:
        items = data.items() if type(data) is dict else dict(data).items()
        found: dict[str, Any] = {}
        expires: tuple[datetime, str, int] | None = None
        unset: list[str] = []  # optional fields given blank
        last, in_order = -1, True
        for key, value in items:
            spec = _FAST_KEYS.get(key) if type(key) is str else None
            if spec is None:
                return None  # an unknown parameter, or a name that is not text
            alias, position, check, plain = spec
            if alias in found:
                return None  # the API name and the field name both
            if position < last:
                in_order = False
            last = position
            if plain is not None and type(value) is str and plain.fullmatch(value):
                found[alias] = value
            elif check is None:
                expires = _fast_moment(value)
                found[alias] = expires[1]
            else:
                checked = check(value)
                if checked is not None:
                    found[alias] = checked
                else:
                    unset.append(alias)
        if unset and (len(set(unset)) != len(unset) or not found.keys().isdisjoint(unset)):
            return None  # the API name and the field name both
        if expires is None or "PoolKey" not in found or "PhoneNoA" not in found or "PhoneNoB" not in found:
            return None  # a required field is missing
        if found["PhoneNoA"] == found["PhoneNoB"]:
            return None
        if check_future:
            check_lead(expires[0], now)  # a FieldError: pydantic refuses it
    except Exception:
        return None  # whatever it is, pydantic decides (and raises what it raises)
    if not in_order:
        found = {alias: found[alias] for alias in sorted(found, key=_FAST_POSITION.__getitem__)}
    return found, expires[2]
