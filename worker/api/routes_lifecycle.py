"""``POST /v1/binds/{key}/unbind`` and ``POST /v1/binds/{key}/extend``: the trip lifecycle, with
the semantics of :func:`worker.enqueue_unbind` and :func:`worker.enqueue_extend` (idempotent;
a bind still queued is cancelled by an unbind, one in flight is waited for)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from worker.api.auth import require
from worker.api.common import error_responses
from worker.api.results import checked_key, location
from worker.api.schemas import Accepted, ExtendBody, UnbindBody
from worker.producer import LifecycleHandle, enqueue_extend, enqueue_unbind
from worker.tokens import Principal

router = APIRouter(tags=["trip lifecycle"])

_LOCATION = {"Location": {"description": "the operation's result: GET it", "schema": {"type": "string"}}}
_RESPONSES = {
    202: {"model": Accepted, "description": "accepted", "headers": _LOCATION},
    200: {"model": Accepted, "description": "the same operation, already accepted", "headers": _LOCATION},
    **error_responses((404, "no bind with this key")),
}
_KEY = Path(description="the bind's idempotency key")


def _accepted(handle: LifecycleHandle) -> JSONResponse:
    status = "pending"
    if not handle.created:
        current = handle.status()
        status = current.status if current is not None else status
    answer = Accepted(
        key=handle.key, status=status, task_id=handle.task_id, created=handle.created, kind=handle.action
    )
    return JSONResponse(
        answer.model_dump(),
        status_code=202 if handle.created else 200,
        headers={"Location": location(handle.key)},
    )


@router.post(
    "/v1/binds/{key:bindkey}/unbind",
    status_code=202,
    response_model=None,
    summary="Release a binding (the trip ended)",
    responses=_RESPONSES,
)
def unbind(
    key: Annotated[str, _KEY],
    principal: Annotated[Principal, Depends(require("operate"))],
    body: UnbindBody | None = None,
) -> JSONResponse:
    """Unbind the binding of bind ``key`` (its stored SubsId and SecretNo are used). Unbinding
    twice is one operation; a bind still queued is cancelled, one in flight is waited for.
    Scope: ``operate``."""
    url = body.callback_url if body is not None else None
    numbers = principal.has("numbers")
    return _accepted(enqueue_unbind(checked_key(key), callback_url=url, callback_numbers=numbers))


@router.post(
    "/v1/binds/{key:bindkey}/extend",
    status_code=202,
    response_model=None,
    summary="Move a binding's Expiration (the trip runs late)",
    responses=_RESPONSES,
)
def extend(
    key: Annotated[str, _KEY],
    body: ExtendBody,
    principal: Annotated[Principal, Depends(require("operate"))],
) -> JSONResponse:
    """Move the Expiration of bind ``key``. Asking twice for the same Expiration is one
    operation; of several extends the latest asked for wins. Scope: ``operate``."""
    handle = enqueue_extend(
        checked_key(key),
        body.expiration,
        callback_url=body.callback_url,
        callback_numbers=principal.has("numbers"),
    )
    return _accepted(handle)
