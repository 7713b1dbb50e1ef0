"""``POST /v1/binds``, ``POST /v1/binds:batch`` and ``GET /v1/binds/{key}[?wait=SECONDS]``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from worker.api.auth import require
from worker.api.common import error_responses
from worker.api.errors import IDEMPOTENCY_CONFLICT, INVALID, error_body
from worker.api.results import checked_key, is_done, load_document, location
from worker.api.schemas import (
    EXAMPLE_BIND,
    Accepted,
    BatchBody,
    BatchResult,
    BindBody,
    ResultDocument,
)
from worker.api.waiting import MAX_WAIT_S, read_when_done
from worker.errors import AxbError, IdempotencyConflictError, InvalidRequestError
from worker.producer import MAX_KEY_LENGTH, enqueue_bind, enqueue_binds
from worker.tokens import Principal

router = APIRouter(tags=["binds"])

_LOCATION = {"Location": {"description": "the result: GET it", "schema": {"type": "string"}}}


@router.post(
    "/v1/binds",
    status_code=202,
    response_model=None,
    summary="Enqueue one bind",
    responses={
        202: {"model": Accepted, "description": "accepted", "headers": _LOCATION},
        200: {"model": Accepted, "description": "the same bind, already accepted", "headers": _LOCATION},
        **error_responses((409, "the idempotency key is used by a different request")),
    },
    openapi_extra={"requestBody": {"content": {"application/json": {"example": EXAMPLE_BIND}}}},
)
def create_bind(
    body: BindBody,
    principal: Annotated[Principal, Depends(require("bind"))],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            description="the bind's key (default: OutId, else a hash of the request)",
        ),
    ] = None,
) -> JSONResponse:
    """Validate and enqueue one bind. 202 when this call created it; 200 when the same key with
    the same request was accepted before (also concurrently): never a second vendor binding.
    409 when the key belongs to a different request. Scope: ``bind``."""
    handle = enqueue_bind(
        body.vendor_params(),
        idempotency_key=idempotency_key,
        callback_url=body.callback_url,
        callback_numbers=principal.has("numbers"),
    )
    status = "pending"
    if not handle.created:
        current = handle.status()
        status = current.status if current is not None else status
    answer = Accepted(key=handle.key, status=status, task_id=handle.task_id, created=handle.created)
    return JSONResponse(
        answer.model_dump(),
        status_code=202 if handle.created else 200,
        headers={"Location": location(handle.key)},
    )


@router.post(
    "/v1/binds:batch",
    response_model=BatchResult,
    summary="Enqueue up to 1,000 binds",
    responses=error_responses(),
)
def create_binds(body: BatchBody, principal: Annotated[Principal, Depends(require("bind"))]) -> JSONResponse:
    """Validate and enqueue up to 1,000 binds in one call. Each item may carry its own
    ``IdempotencyKey`` and ``CallbackUrl``. Invalid items come back in ``rejected`` with their
    index, the field and the vendor code; the others are enqueued. Calling again with the same
    items commits nothing twice (``created`` false). Scope: ``bind``."""
    items = [(item.vendor_params(), item.idempotency_key, item.callback_url) for item in body.items]
    result = enqueue_binds(items, callback_numbers=principal.has("numbers"))
    rejected_at = {i for i, _err in result.rejected}
    accepted_at = [i for i in range(len(items)) if i not in rejected_at]
    accepted = [
        {"index": i, "key": h.key, "task_id": h.task_id, "created": h.created}
        for i, h in zip(accepted_at, result.handles, strict=True)
    ]
    rejected = [{"index": i, **_refusal(err)} for i, err in sorted(result.rejected, key=lambda r: r[0])]
    return JSONResponse({"accepted": accepted, "rejected": rejected, "created": result.created})


def _refusal(err: AxbError) -> dict[str, Any]:
    if isinstance(err, InvalidRequestError):
        return error_body(err.code, str(err), err.problems)
    if isinstance(err, IdempotencyConflictError):
        return error_body(IDEMPOTENCY_CONFLICT, str(err))
    return error_body(INVALID, str(err))


@router.get(
    "/v1/binds/{key:bindkey}",
    response_model=ResultDocument,
    summary="A bind's (or an unbind's / extend's) result, optionally waiting for it",
    responses=error_responses((404, "no record with this key")),
)
async def read_bind(
    request: Request,
    key: Annotated[str, Path(description="a bind's idempotency key, or an operation's key")],
    principal: Annotated[Principal, Depends(require("read"))],
    wait: Annotated[
        float,
        Query(
            ge=0, le=MAX_WAIT_S, description="hold the request up to this many seconds until the work ends"
        ),
    ] = 0,
) -> JSONResponse:
    """Status, state, attempts, code and, once succeeded, the ``SecretBindDTO``. With ``wait``,
    the answer comes as soon as the work ends (woken by the outcome), or when the time is up
    with the current status. Numbers are masked unless the token has the ``numbers`` scope.
    Scope: ``read``."""
    key = checked_key(key)
    show = principal.has("numbers")

    async def load() -> dict[str, Any] | None:
        return await run_in_threadpool(load_document, key, show_numbers=show)

    document = await read_when_done(request.app.state.watcher, key, wait, load, is_done)
    if document is None:
        return JSONResponse(error_body("axb.UNKNOWN_KEY", f"no record with key {key!r}"), status_code=404)
    return JSONResponse(document)
