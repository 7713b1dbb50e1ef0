"""API tokens: created once, stored only as a SHA-256 hash, verified in constant time.

A token reads ``axb_<id>_<secret>``: a 12-hex-digit id (not secret: it finds the record) and
32 random bytes. Redis keeps, per id, the name, the scopes and the SHA-256 of the whole token,
never the token itself; :meth:`TokenStore.create` returns it once, to be shown once.

Scopes: ``bind`` (enqueue binds), ``read`` (read results), ``numbers`` (see phone numbers
unmasked, in results and callbacks), ``operate`` (unbind, extend; the on-call console).

Used by ``axb token`` (:mod:`worker.cli.tokens`) and ``axb api`` (:mod:`worker.api.auth`)::

    store = TokenStore(redis_client)
    token, info = store.create("orders", {"bind", "read"})
    principal = store.verify(token)          # Principal(name="orders", scopes=...) or None
    store.revoke("orders")

Tokens never appear in logs, exception messages or reprs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from worker import keys, lua
from worker.errors import AxbError

SCOPES = ("bind", "read", "numbers", "operate")
TOKEN_PREFIX = "axb_"  # noqa: S105 (a prefix, not a secret)
_ID_HEX = 12
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN = re.compile(r"^axb_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


class TokenError(AxbError):
    """A token command that cannot be done (bad name or scope, name taken, unknown name)."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token belongs to: what a route needs to authorise a request."""

    token_id: str
    name: str
    scopes: frozenset[str]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as ``axb token list`` shows it (the hash is left out)."""

    token_id: str
    name: str
    scopes: frozenset[str]
    created_at_ms: int
    revoked_at_ms: int | None = None
    _hash: str = field(default="", repr=False)

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.token_id,
            "scopes": sorted(self.scopes),
            "created_at_ms": self.created_at_ms,
            "revoked_at_ms": self.revoked_at_ms,
        }

    @classmethod
    def from_json(cls, token_id: str, raw: str | bytes) -> TokenInfo:
        rec = json.loads(raw)
        revoked = rec.get("revoked_at")
        return cls(
            token_id=token_id,
            name=str(rec["name"]),
            scopes=frozenset(rec.get("scopes") or ()),
            created_at_ms=int(rec.get("created_at") or 0),
            revoked_at_ms=int(revoked) if revoked else None,
            _hash=str(rec.get("sha256") or ""),
        )


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """``"bind,read"`` (or an iterable) as a set of known scopes; raises :class:`TokenError`."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(s.strip() for s in items if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise TokenError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise TokenError(f"give at least one scope of: {', '.join(SCOPES)}")
    return scopes


def token_id_of(token: str) -> str | None:
    """The id part of a well-formed token, else None (no Redis involved)."""
    m = _TOKEN.match(token)
    return m.group(1) if m else None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_from(token: str, stored: str | bytes | None) -> Principal | None:
    """Check ``token`` against its stored record (``HGET keys.API_TOKENS <id>``), in constant time.

    None for a malformed, unknown or revoked token. Callers that pipeline the read with other
    commands (``axb api`` reads the record and the rate limit in one round trip) use this
    directly; everyone else calls :meth:`TokenStore.verify`."""
    token_id = token_id_of(token)
    if token_id is None or stored is None:
        return None
    try:
        info = TokenInfo.from_json(token_id, stored)
    except (ValueError, KeyError, TypeError):
        return None
    if not hmac.compare_digest(token_hash(token), info._hash) or info.revoked:
        return None
    return Principal(token_id=token_id, name=info.name, scopes=info.scopes)


class TokenStore:
    """Create, list, revoke and verify API tokens kept in one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._create = client.register_script(lua.source("token_create"))
        self._revoke = client.register_script(lua.source("token_revoke"))

    def create(self, name: str, scopes: str | Iterable[str]) -> tuple[str, TokenInfo]:
        """A new token for ``name``: returns the token (show it once; only its hash is kept)."""
        if not _NAME.match(name):
            raise TokenError("a token name is 1-64 letters, digits, '.', '_' or '-', starting alphanumeric")
        wanted = parse_scopes(scopes)
        token_id = secrets.token_hex(_ID_HEX // 2)
        token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = int(time.time() * 1000)
        record = {"name": name, "scopes": sorted(wanted), "sha256": token_hash(token), "created_at": now}
        created = self._create(
            keys=[keys.API_TOKEN_NAMES, keys.API_TOKENS], args=[name, token_id, json.dumps(record)]
        )
        if not int(created):
            raise TokenError(f"token name {name!r} is in use; revoke it first or pick another name")
        return token, TokenInfo(token_id, name, wanted, now)

    def list(self, *, include_revoked: bool = True) -> list[TokenInfo]:
        """Every token, oldest first (revoked ones too, unless ``include_revoked=False``)."""
        out = []
        for raw_id, raw in self.redis.hgetall(keys.API_TOKENS).items():
            token_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            try:
                info = TokenInfo.from_json(token_id, raw)
            except (ValueError, KeyError, TypeError):
                continue
            if include_revoked or not info.revoked:
                out.append(info)
        return sorted(out, key=lambda t: (t.created_at_ms, t.name))

    def revoke(self, name: str) -> TokenInfo:
        """Revoke ``name``'s live token at once; raises :class:`TokenError` for an unknown name."""
        now = int(time.time() * 1000)
        found = self._revoke(keys=[keys.API_TOKEN_NAMES, keys.API_TOKENS], args=[name, now])
        if not found:
            raise TokenError(f"no live token named {name!r}")
        raw_id, raw = found
        return TokenInfo.from_json(raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id), raw)

    def verify(self, token: str) -> Principal | None:
        """The token's :class:`Principal`, or None if it is malformed, unknown or revoked."""
        token_id = token_id_of(token)
        if token_id is None:
            return None
        return principal_from(token, self.redis.hget(keys.API_TOKENS, token_id))
