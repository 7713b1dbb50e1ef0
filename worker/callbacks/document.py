"""The JSON document of a finished (or unfinished) bind or operation.

One shape, used both by the HTTP API (``GET /v1/binds/{key}``) and by completion callbacks
(:mod:`worker.callbacks.delivery`), so a receiver and a poller see the same thing. Values are JSON-ready
(str, int, None, dicts); phone numbers, the X number included, are masked unless
``show_numbers``.

A bind::

    {"key", "kind": "bind", "status", "state", "attempts", "code", "message",
     "request": {"PoolKey", "PhoneNoA", "PhoneNoB", "Expiration", "OutId", ...},
     "SecretBindDTO": {"SecretNo", "SubsId", "Extension"} | None, "possible_orphan", "updated_at"}

``possible_orphan``: a first copy of the bind may have left a binding at the vendor (it is in
the possible-orphans ledger, see :mod:`worker.orphans`).

An unbind or extend::

    {"key", "kind": "unbind" | "extend", "status", "outcome", "attempts", "code", "message",
     "SubsId", "SecretNo", "Expiration", "updated_at"}

``updated_at`` is ISO 8601 in UTC with milliseconds (``2026-11-30T10:00:00.123Z``), or None.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from worker.masking import mask_obj
from worker.store import BindRecord

if TYPE_CHECKING:
    from worker.producer import BindResult, LifecycleResult


def iso_utc(ms: int) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC (``...Z``); None for 0."""
    if not ms:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bind_document(result: BindResult, *, show_numbers: bool) -> dict[str, Any]:
    """A bind's document (see the module docstring)."""
    doc: dict[str, Any] = {
        "key": result.key,
        "kind": "bind",
        "status": result.status,
        "state": result.state,
        "attempts": result.attempts,
        "code": result.code,
        "message": result.message,
        "request": dict(result.request),
        "SecretBindDTO": (
            {
                "SecretNo": result.dto.secret_no,
                "SubsId": result.dto.subs_id,
                "Extension": result.dto.extension,
            }
            if result.dto is not None
            else None
        ),
        "possible_orphan": result.possible_orphan,
        "updated_at": iso_utc(result.updated_at),
    }
    return doc if show_numbers else mask_obj(doc)


def operation_document(result: LifecycleResult, *, show_numbers: bool) -> dict[str, Any]:
    """An unbind's or extend's document (see the module docstring)."""
    doc: dict[str, Any] = {
        "key": result.key,
        "kind": result.action,
        "status": result.status,
        "outcome": result.outcome,
        "attempts": result.attempts,
        "code": result.code,
        "message": result.message,
        "SubsId": result.subs_id or None,
        "SecretNo": result.secret_no or None,
        "Expiration": result.expiration or None,
        "updated_at": iso_utc(result.updated_at),
    }
    return doc if show_numbers else mask_obj(doc)


def document(target: BindRecord, *, show_numbers: bool) -> dict[str, Any]:
    """The callback body of ``target`` (the API's ``GET /v1/binds/{key}`` document)."""
    # The producer checks callback URLs with this package (worker.callbacks.url), so its result
    # types are imported when a document is built, not when this package is.
    from worker.producer import BindResult, LifecycleResult

    if target.action == "bind":
        return bind_document(BindResult.from_record(target), show_numbers=show_numbers)
    return operation_document(LifecycleResult.from_record(target), show_numbers=show_numbers)
