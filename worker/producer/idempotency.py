"""Idempotency keys: the explicit key, else ``OutId``, else a hash of the request; their checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker import keys
from worker.errors import InvalidRequestError
from worker.vendor import BindAxbRequest, bind_default_key

MAX_KEY_LENGTH = 200


def derive_key(request: BindAxbRequest, idempotency_key: str | None = None) -> str:
    return key_for_params(request.to_json_dict(), idempotency_key)


def key_for_params(params: Mapping[str, Any], idempotency_key: str | None) -> str:
    """The bind's key: the explicit one, else ``OutId``, else a hash (``params`` is the request's
    ``to_json_dict()``)."""
    key = idempotency_key.strip() if idempotency_key else bind_default_key(params)
    check_key(key)
    if key.startswith(keys.RESERVED_PREFIXES):
        raise InvalidRequestError.single(
            "IdempotencyKey",
            "isv.INVALID_PARAMETERS",
            "must not start with "
            + " or ".join(keys.RESERVED_PREFIXES)
            + " (lifecycle operations' and callbacks' keys)",
        )
    return key


def check_key(key: str) -> None:
    # Whitespace other than " " is never printable: a printable key needs no closer look.
    if (
        not key
        or len(key) > MAX_KEY_LENGTH
        or (not key.isprintable() and any(c.isspace() and c != " " for c in key))
    ):
        raise InvalidRequestError.single(
            "IdempotencyKey", "isv.INVALID_PARAMETERS", f"must be 1-{MAX_KEY_LENGTH} printable characters"
        )
