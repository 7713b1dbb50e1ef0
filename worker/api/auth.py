"""Bearer tokens on every ``/v1`` route: who is calling, may they, and not too fast.

Two Redis round trips per request: the token's record, then (for a valid token with the
scope) a slot of its rate limit (:mod:`worker.api.ratelimit`). So: 401 for a missing,
malformed, unknown or revoked token (the answer does not say which), 403 when the token lacks
the route's scope, 429 with ``Retry-After`` over the rate. The token is compared in constant
time (:mod:`worker.tokens`) and never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from worker import keys
from worker.api.errors import FORBIDDEN, RATE_LIMITED, UNAUTHORIZED, ApiError
from worker.api.ratelimit import retry_after_s, token_limit
from worker.runtime import get_runtime
from worker.tokens import Principal, principal_from, token_id_of

bearer = HTTPBearer(auto_error=False, description="a token made with `axb token create NAME --scopes ...`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def admit(token: str | None, scope: str) -> Principal:
    """Verify ``token``, check ``scope``, take a rate-limit slot; raises :class:`ApiError`."""
    if not token:
        raise ApiError(401, UNAUTHORIZED, "send Authorization: Bearer <token>", headers=_CHALLENGE)
    token_id = token_id_of(token)
    if token_id is None:
        raise ApiError(401, UNAUTHORIZED, "unknown or revoked token", headers=_CHALLENGE)
    rt = get_runtime()
    principal = principal_from(token, rt.redis.hget(keys.API_TOKENS, token_id))
    if principal is None:
        raise ApiError(401, UNAUTHORIZED, "unknown or revoked token", headers=_CHALLENGE)
    if not principal.has(scope):
        raise ApiError(403, FORBIDDEN, f"this token lacks the {scope!r} scope")
    reservation = rt.limiter.reserve([token_limit(rt.settings, token_id)], max_wait_s=0)
    if not reservation.granted:
        wait_s = retry_after_s(reservation)
        raise ApiError(
            429,
            RATE_LIMITED,
            f"over this token's request rate; retry in {wait_s} s",
            headers={"Retry-After": str(wait_s)},
        )
    return principal


def require(scope: str) -> Callable[..., Principal]:
    """A dependency admitting requests whose token has ``scope`` (run in the thread pool)."""

    def admitted(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        return admit(credentials.credentials if credentials else None, scope)

    return admitted
