"""API tokens (worker.tokens, `axb token`): shown once, stored as a hash, revocable, scoped."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.pipeline_fixture import apply_env
from worker import keys
from worker.cli import main
from worker.settings import Settings
from worker.tokens import TokenError, TokenStore, parse_scopes, principal_from, token_hash


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def store(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> TokenStore:
    apply_env(monkeypatch, {})
    return TokenStore(redis.Redis.from_url(settings.redis_url))


def test_a_created_token_verifies_to_its_name_and_scopes_and_only_its_hash_is_stored(
    store: TokenStore, redis_client: redis.Redis
) -> None:
    """create() returns the token once; Redis holds its SHA-256, never the token."""
    token, info = store.create("orders", "bind,read")
    principal = store.verify(token)
    assert principal is not None
    assert (principal.name, principal.scopes) == ("orders", frozenset({"bind", "read"}))
    stored = redis_client.hgetall(keys.API_TOKENS)
    assert list(stored) == [info.token_id]
    assert token not in json.dumps(stored)
    assert json.loads(stored[info.token_id])["sha256"] == token_hash(token)


def test_wrong_malformed_and_revoked_tokens_do_not_verify(store: TokenStore) -> None:
    """A token differing in one character, a malformed one and a revoked one all give None."""
    token, _ = store.create("orders", ["bind"])
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert store.verify(flipped) is None
    assert store.verify("not-a-token") is None
    assert store.verify("") is None
    assert principal_from(token, None) is None
    store.revoke("orders")
    assert store.verify(token) is None


def test_a_name_has_one_live_token_and_is_free_again_after_revocation(store: TokenStore) -> None:
    """A second create of a live name is refused; after revoke the name can be reused."""
    old, _ = store.create("orders", "bind")
    with pytest.raises(TokenError, match="in use"):
        store.create("orders", "read")
    store.revoke("orders")
    new, info = store.create("orders", "read")
    assert store.verify(new) is not None and store.verify(old) is None
    listed = store.list()
    assert [(t.name, t.revoked) for t in listed] == [("orders", True), ("orders", False)]
    assert [t.token_id for t in store.list(include_revoked=False)] == [info.token_id]


def test_unknown_scopes_bad_names_and_unknown_revocations_are_refused(store: TokenStore) -> None:
    """Errors name the problem; nothing is stored for a refused create."""
    with pytest.raises(TokenError, match="unknown scope"):
        store.create("orders", "bind,admin")
    with pytest.raises(TokenError, match="at least one scope"):
        parse_scopes(" , ")
    with pytest.raises(TokenError, match="token name"):
        store.create("bad name!", "bind")
    with pytest.raises(TokenError, match="no live token"):
        store.revoke("nobody")
    assert store.list() == []


def test_axb_token_create_prints_the_token_once_and_list_never_shows_it(store: TokenStore) -> None:
    """`axb token create` prints the token alone on stdout; `list --json` shows name and scopes."""
    out = run("token", "create", "console", "--scopes", "read,operate")
    assert out.exit_code == 0, out.output
    token = out.stdout.strip()
    principal = store.verify(token)
    assert principal is not None and principal.scopes == {"read", "operate"}
    listed = run("token", "list", "--json")
    assert token not in listed.output
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "console" and entry["scopes"] == ["operate", "read"]
    table = run("token", "list")
    assert "console" in table.output and token not in table.output


def test_axb_token_revoke_and_refusals_exit_2_with_one_line(store: TokenStore) -> None:
    """Revoking works once; a second revoke and a bad scope exit 2 with the reason."""
    assert run("token", "create", "orders", "--scopes", "bind").exit_code == 0
    assert run("token", "revoke", "orders").exit_code == 0
    again = run("token", "revoke", "orders")
    assert again.exit_code == 2 and "no live token" in again.output
    bad = run("token", "create", "x", "--scopes", "root")
    assert bad.exit_code == 2 and "unknown scope" in bad.output
