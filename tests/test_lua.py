"""The Lua loader (worker/lua.py): every script loads, includes expand once, results are named."""

from __future__ import annotations

import json

import pytest
import redis

from worker import keys, lua
from worker.store import Begin, BindStore, Cancel, Status, now_ms


def test_every_lua_file_in_the_tree_compiles_in_redis(redis_client: redis.Redis) -> None:
    """SCRIPT LOAD compiles each script with its includes: a syntax error fails here, by name."""
    names = lua.names()
    assert {"begin_attempt", "finished", "statuses", "hold_note", "limiter_reserve", "delay_claim"} <= set(
        names
    )
    for name in names:
        sha = redis_client.script_load(lua.source(name))
        assert redis_client.script_exists(sha) == [True], name


def test_an_include_line_is_replaced_by_the_named_file_once() -> None:
    """``--! include`` lines vanish; the included text appears exactly once."""
    text = lua.source("begin_attempt")
    assert not any(line.startswith("--! include") for line in text.splitlines())
    assert text.count("local function axb_terminal(") == 1
    assert text.count("local function axb_finished(") == 1
    assert text.index("axb_terminal(") < text.index("axb_finished(")


def test_an_unknown_script_name_is_refused_with_its_name() -> None:
    with pytest.raises(lua.LuaError, match="no_such_script"):
        lua.source("no_such_script")


def test_the_lua_status_names_are_the_python_ones(redis_client: redis.Redis) -> None:
    """statuses.lua and worker.store.Status name the same five strings, in the same order."""
    probe = lua.source("statuses") + "\nreturn {PENDING, RETRYING, SUCCEEDED, DEAD_LETTERED, CANCELLED}"
    assert redis_client.eval(probe, 0) == [s.value for s in Status]


def test_begin_and_cancel_answer_with_named_results(redis_client: redis.Redis) -> None:
    """A missing record: begin answers Begin.TERMINAL and try_cancel Cancel.MISSING; a pending
    bind is cancelled (Cancel.CANCELLED) with the errors.CANCELLED code, then Begin.TERMINAL."""
    store = BindStore(redis_client)
    assert store.begin_attempt("nobody", None) is Begin.TERMINAL
    assert store.try_cancel("nobody", "unbind:nobody") is Cancel.MISSING
    row = {
        "key": "b1",
        "task_id": keys.task_id_for("b1"),
        "request": json.dumps({"PoolKey": "FC1"}),
        "fingerprint": "fp",
        "pool": "FC1",
        "deadline": now_ms() + 60_000,
        "expires_at": now_ms() + 120_000,
        "ttl_s": 3600,
    }
    store.create_many([row])
    assert store.try_cancel("b1", "unbind:b1") is Cancel.CANCELLED
    rec = store.get("b1")
    assert rec is not None and rec.status == Status.CANCELLED and rec.code == "axb.CANCELLED"
    assert store.try_cancel("b1", "unbind:b1") is Cancel.FINISHED
    assert store.begin_attempt("b1", None) is Begin.TERMINAL
