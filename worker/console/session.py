"""Console logins: a session in Redis (token id, name, scopes, CSRF token), its id in a cookie.

The cookie holds only a random session id (HttpOnly, SameSite=Strict, Secure over https); the
token itself is checked once at login (:meth:`worker.tokens.TokenStore.verify`) and never
stored. Each request re-reads the session and checks that its token has not been revoked since.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from worker import keys
from worker.tokens import Principal, TokenInfo, TokenStore

COOKIE = "axb_console"
LOGIN_COOKIE = "axb_console_login"  # double-submit CSRF value of the login form


@dataclass(frozen=True)
class Session:
    """A logged-in console user: who, with which scopes, and the CSRF token of their forms."""

    session_id: str
    token_id: str
    name: str
    scopes: frozenset[str]
    csrf: str

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf, str(sent))


def _key(session_id: str) -> str:
    # Redis holds the session under a hash of its id: a copy of Redis does not log anyone in.
    return keys.console_session(hashlib.sha256(session_id.encode()).hexdigest())


def login(redis: Any, token: str, ttl_s: int) -> Session | Principal | None:
    """A new session for ``token`` when it has ``operate``; its Principal when it lacks it; None
    when it is unknown or revoked."""
    principal = TokenStore(redis).verify(token.strip())
    if principal is None or not principal.has("operate"):
        return principal
    session = Session(
        session_id=secrets.token_urlsafe(32),
        token_id=principal.token_id,
        name=principal.name,
        scopes=principal.scopes,
        csrf=secrets.token_urlsafe(32),
    )
    record = {
        "token_id": session.token_id,
        "name": session.name,
        "scopes": sorted(session.scopes),
        "csrf": session.csrf,
    }
    redis.set(_key(session.session_id), json.dumps(record), ex=ttl_s)
    return session


def current(redis: Any, session_id: str | None) -> Session | None:
    """The session of this cookie, if it exists and its token is still live."""
    if not session_id or len(session_id) > 128:
        return None
    pipe = redis.pipeline(transaction=False)
    pipe.get(_key(session_id))
    raw = pipe.execute()[0]
    if raw is None:
        return None
    try:
        rec = json.loads(raw)
        stored = redis.hget(keys.API_TOKENS, rec["token_id"])
        if stored is None or TokenInfo.from_json(rec["token_id"], stored).revoked:
            return None
        return Session(session_id, rec["token_id"], rec["name"], frozenset(rec["scopes"]), rec["csrf"])
    except (ValueError, KeyError, TypeError):
        return None


def logout(redis: Any, session_id: str | None) -> None:
    if session_id:
        redis.delete(_key(session_id))
