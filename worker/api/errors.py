"""Every error answer of the API: one JSON shape, ``{"Code", "Message", "Problems"}``, and the
one place that turns exceptions into status codes.

==========================================  ======  ==============================================
what                                        status  Code
==========================================  ======  ==============================================
body is not JSON                            400     axb.MALFORMED_JSON
no / unknown / revoked token                401     axb.UNAUTHORIZED (``WWW-Authenticate: Bearer``)
token lacks the route's scope               403     axb.FORBIDDEN
unknown key (GET, unbind, extend)           404     axb.UNKNOWN_KEY
no such route / method                      404/405 axb.NOT_FOUND / axb.METHOD_NOT_ALLOWED
idempotency key reused, different body      409     axb.IDEMPOTENCY_CONFLICT
body over AXB_API_MAX_BODY_BYTES            413     axb.BODY_TOO_LARGE
wrong types, unknown fields, bad values     422     the vendor code (isv.*) or isv.INVALID_PARAMETERS
over the token's rate                       429     axb.RATE_LIMITED (``Retry-After``)
Redis unreachable                           503     axb.UNAVAILABLE (``Retry-After``)
==========================================  ======  ==============================================

Messages are masked (no phone number) and never quote a token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker import errors
from worker.errors import AxbError, FieldProblem, IdempotencyConflictError, InvalidRequestError
from worker.masking import mask_text

log = logging.getLogger("axb.api")

MALFORMED_JSON = "axb.MALFORMED_JSON"
UNAUTHORIZED = "axb.UNAUTHORIZED"
FORBIDDEN = "axb.FORBIDDEN"
NOT_FOUND = "axb.NOT_FOUND"
METHOD_NOT_ALLOWED = "axb.METHOD_NOT_ALLOWED"
IDEMPOTENCY_CONFLICT = "axb.IDEMPOTENCY_CONFLICT"
BODY_TOO_LARGE = "axb.BODY_TOO_LARGE"
RATE_LIMITED = "axb.RATE_LIMITED"
UNAVAILABLE = "axb.UNAVAILABLE"
INTERNAL = "axb.INTERNAL"
INVALID = "isv.INVALID_PARAMETERS"

_BY_STATUS = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: BODY_TOO_LARGE, 401: UNAUTHORIZED, 403: FORBIDDEN}


class ApiError(Exception):
    """An error answer: raise it from a route or dependency."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        problems: Sequence[FieldProblem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = mask_text(message)
        self.problems = list(problems)
        self.headers = dict(headers or {})


def error_body(code: str, message: str, problems: Sequence[FieldProblem] = ()) -> dict[str, Any]:
    return {
        "Code": code,
        "Message": mask_text(message),
        "Problems": [{"field": p.field, "code": p.code, "reason": p.reason} for p in problems],
    }


def error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(error_body(err.code, err.message, err.problems), err.status, headers=err.headers)


def invalid_error(err: InvalidRequestError) -> ApiError:
    """A producer's refusal: 422 naming the field and vendor code; 404 for an unknown key."""
    status = 404 if err.code == errors.UNKNOWN_KEY else 422
    return ApiError(status, err.code, str(err), problems=err.problems)


def _where(loc: Sequence[Any]) -> str:
    """``("body", "items", 3, "PhoneNoA")`` -> ``items[3].PhoneNoA``; ``("header", ...)`` -> the header."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return mask_text(out or (str(loc[0]) if loc else "request"))


def validation_error(exc: RequestValidationError) -> ApiError:
    problems: list[FieldProblem] = []
    for e in exc.errors():
        etype = str(e.get("type", ""))
        loc = tuple(e.get("loc", ()))
        if etype == "json_invalid":
            return ApiError(400, MALFORMED_JSON, "the body is not valid JSON")
        field = _where(loc)
        if etype == "extra_forbidden":
            reason = "is not a parameter of this request"
        elif etype == "missing":
            reason = "is required"
        elif loc == ("body",) and etype in ("model_attributes_type", "dict_type", "model_type"):
            reason = "the body must be a JSON object, sent with Content-Type: application/json"
            field = "body"
        else:
            # pydantic's message never quotes the input (hide_input is not needed: it is dropped).
            reason = str(e.get("msg", "is invalid"))
        problems.append(FieldProblem(field, INVALID, reason))
    message = "; ".join(str(p) for p in problems) or "invalid request"
    return ApiError(422, INVALID, message, problems=problems)


def install(app: FastAPI) -> None:
    """Register the handlers that keep every answer in the one shape (and never a 500 for input)."""

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc))

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _BY_STATUS.get(exc.status_code, f"axb.HTTP_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(ApiError(exc.status_code, code, detail, headers=exc.headers))

    async def on_axb(_request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, InvalidRequestError):
            return error_response(invalid_error(exc))
        if isinstance(exc, IdempotencyConflictError):
            return error_response(ApiError(409, IDEMPOTENCY_CONFLICT, str(exc)))
        assert isinstance(exc, AxbError)
        return error_response(ApiError(422, INVALID, str(exc)))

    async def on_redis(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unavailable: %s", mask_text(type(exc).__name__))
        return error_response(
            ApiError(
                503, UNAVAILABLE, "the service's store is unreachable; retry", headers={"Retry-After": "1"}
            )
        )

    async def on_crash(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s: %s", type(exc).__name__, mask_text(str(exc)))
        return error_response(ApiError(500, INTERNAL, "internal error"))

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(AxbError, on_axb)
    app.add_exception_handler(redis.RedisError, on_redis)
    app.add_exception_handler(Exception, on_crash)
