"""What every ``/v1`` route shares: the documented error answers."""

from __future__ import annotations

from typing import Any

from worker.api.schemas import ErrorBody

_ERRORS = {
    400: "the body is not JSON",
    401: "missing, unknown or revoked token",
    403: "the token lacks this route's scope",
    413: "the body is too large",
    422: "invalid request: the fields at fault and the vendor codes they would cause",
    429: "over the token's request rate (see Retry-After)",
    503: "the service's store is unreachable (see Retry-After)",
}


def error_responses(*extra: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: every error answer it may give, in the one error shape."""
    out: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": text} for status, text in (*_ERRORS.items(), *extra)
    }
    return out
