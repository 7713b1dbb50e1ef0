"""Bulk enqueues (``enqueue_binds``, ``prepare_binds`` + ``commit_binds``) against a real Redis:
the fast path gives the records the pydantic path gives, idempotency and the ``published`` flag
hold, and many records per script call lose or mix up none."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import keys
from worker.errors import IdempotencyConflictError, InvalidRequestError
from worker.producer import binds as producer_binds
from worker.producer import (
    commit_binds,
    enqueue_bind,
    enqueue_binds,
    prepare_bind,
    prepare_binds,
)
from worker.runtime import Runtime
from worker.store import BindStore, now_ms


def expiration(hours: float = 9) -> str:
    return (datetime.now(UTC) + timedelta(hours=8 + hours)).strftime("%Y-%m-%d %H:%M:%S")


# One Expiration for the module: a request built twice must be the same request, also when a
# second boundary falls between the two (the idempotency tests send the same rows again).
EXPIRATION = expiration()


def req(i: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"1380002{i:04d}",
        "PhoneNoB": f"1390002{i:04d}",
        "Expiration": EXPIRATION,
        "OutId": f"bulk-{i}",
    }
    row.update(over)
    return {k: v for k, v in row.items() if v is not None}


def queued_keys(rt: Runtime) -> list[str]:
    """The keys the messages on the queue carry (one per ``axb.bind``, many per ``axb.bind_many``)."""
    out: list[str] = []
    for raw in reversed(rt.redis.lrange(rt.settings.queue, 0, -1)):
        msg = json.loads(raw)
        args = json.loads(base64.b64decode(msg["body"]))[0]
        out.extend(args[0] if isinstance(args[0], list) else [args[0]])
    return out


@settings(max_examples=500, deadline=None)
@given(
    key=st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
    action=st.sampled_from(["bind", "unbind", "extend"]),
)
def test_the_task_id_is_the_uuid5_of_the_key(key: str, action: str) -> None:
    assert keys.task_id_for(key, action) == str(uuid.uuid5(keys.TASK_ID_NAMESPACE, f"{action}:{key}"))


def test_a_key_that_is_not_utf_8_fails_as_before() -> None:
    with pytest.raises(UnicodeEncodeError):
        keys.task_id_for("\udcff")


ROWS = [
    req(1),
    req(2, OutId=None),
    req(3, PhoneNoA="+86 138 0002 0003", PhoneNoX="17100000000", CallTimeout="15", IsRecordingEnabled="1"),
    req(4, ExpectCity="杭州", OutId="行程-4", RingConfig='{"a": 1}', CallRestrict="CONTROL_AX_DISABLE"),
    {
        "pool_key": "FC1",
        "phone_no_a": "13800020005",
        "phone_no_b": "057188992688",
        "expiration": expiration(),
    },
]


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("explicit_key", [None, " order-9 "])
def test_the_fast_path_prepares_the_row_the_pydantic_path_prepares(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, row: dict[str, Any], explicit_key: str | None
) -> None:
    deadline = datetime.now(UTC) + timedelta(hours=2)
    fast = prepare_bind(row, explicit_key, deadline, rt)
    monkeypatch.setattr(producer_binds, "bind_params", lambda *a, **kw: None)
    slow = prepare_bind(row, explicit_key, deadline, rt)
    assert fast.key == slow.key
    ttl_fast, ttl_slow = fast.row.pop("ttl_s"), slow.row.pop("ttl_s")
    assert abs(ttl_fast - ttl_slow) <= 1  # a second may tick between the two
    assert fast.row == slow.row
    assert fast.row["task_id"] == keys.task_id_for(fast.key)


def test_bad_rows_are_refused_with_field_and_code_and_the_good_ones_go(rt: Runtime) -> None:
    items = [
        req(10),
        req(11, PhoneNoA="12345"),
        (req(12), "unbind:x"),
        req(13, Expiration="2020-01-01 00:00:00"),
        (req(14), "\t"),
        req(15, PhoneNoB=req(15)["PhoneNoA"]),
        req(16, Extra="1"),
        req(17),
    ]
    res = enqueue_binds(items)
    assert [h.key for h in res.handles] == ["bulk-10", "bulk-17"]
    found = {i: (e.field, e.code) for i, e in res.rejected if isinstance(e, InvalidRequestError)}
    assert found == {
        1: ("PhoneNoA", "isv.MOBILE_NUMBER_ILLEGAL"),
        2: ("IdempotencyKey", "isv.INVALID_PARAMETERS"),
        3: ("Expiration", "isv.EXPIRE_DATE_ILLEGAL"),
        4: ("IdempotencyKey", "isv.INVALID_PARAMETERS"),
        5: ("PhoneNoB", "isv.INVALID_PARAMETERS"),
        6: ("Extra", "isv.INVALID_PARAMETERS"),
    }
    assert "12345" not in str(res.rejected[0][1])  # masked as ever
    assert sorted(queued_keys(rt)) == ["bulk-10", "bulk-17"]


def test_the_same_key_and_request_is_the_same_bind_and_a_different_request_a_conflict(rt: Runtime) -> None:
    first = enqueue_binds([req(i) for i in range(30)])
    assert first.created == 30 and not first.rejected
    again = enqueue_binds([req(i) for i in range(30)] + [req(30)])
    assert again.created == 1 and [h.created for h in again.handles[:30]] == [False] * 30
    changed = enqueue_binds([req(5, PhoneNoB="13900029999"), (req(6), "bulk-7")])
    assert not changed.handles
    conflicts = [(i, e.key) for i, e in changed.rejected if isinstance(e, IdempotencyConflictError)]
    assert conflicts == [(0, "bulk-5"), (1, "bulk-7")]
    assert "bulk-5" in str(changed.rejected[0][1])
    assert len(queued_keys(rt)) == 31  # published once each: duplicates add nothing


def test_a_key_twice_in_one_batch_is_one_record(rt: Runtime) -> None:
    res = enqueue_binds([req(40), req(41), req(40), (req(42), "bulk-41")])
    assert [h.created for h in res.handles] == [True, True, False]
    assert [(i, type(e).__name__) for i, e in res.rejected] == [(3, "IdempotencyConflictError")]
    assert set(queued_keys(rt)) == {"bulk-40", "bulk-41"}
    assert all(rt.store.get(k).published for k in ("bulk-40", "bulk-41"))  # type: ignore[union-attr]


def test_a_record_never_published_is_published_by_the_next_enqueue(rt: Runtime) -> None:
    """The producer died between recording and publishing: the next enqueue of the key publishes
    it (once); a published or finished record is not published again."""
    prepared = [prepare_bind(req(i), None, None, rt) for i in range(50, 54)]
    rt.store.create_many([p.row for p in prepared])  # recorded, never published
    rt.store.mark_published(["bulk-51"])
    rt.redis.hset(keys.bind_record("bulk-52"), "status", "succeeded")
    res = enqueue_binds([req(i) for i in range(50, 54)])
    assert [h.created for h in res.handles] == [False] * 4
    assert sorted(queued_keys(rt)) == ["bulk-50", "bulk-53"]
    assert all(rt.store.get(f"bulk-{i}").published for i in (50, 51, 53))  # type: ignore[union-attr]


def test_prepare_touches_no_redis_and_commit_is_one_enqueue(rt: Runtime) -> None:
    batch = prepare_binds([req(60), req(61, PhoneNoA="x"), (req(62), "k-62")])
    assert [i for i, _ in batch.rejected] == [1] and batch.index == [0, 2]
    assert rt.store.get("bulk-60") is None and not queued_keys(rt)
    res = commit_binds(batch)
    assert [h.key for h in res.handles] == ["bulk-60", "k-62"] and [i for i, _ in res.rejected] == [1]
    assert sorted(queued_keys(rt)) == ["bulk-60", "k-62"]
    rec = rt.store.get("k-62")
    assert rec is not None and rec.status == "pending" and rec.request["OutId"] == "bulk-62"


def test_every_created_record_is_watched_and_expires(rt: Runtime) -> None:
    before = now_ms()
    res = enqueue_binds([req(i) for i in range(70, 1270)])  # more than one script call
    assert res.created == 1200
    watched = dict(rt.redis.zrange(keys.watch(rt.settings.queue), 0, -1, withscores=True))
    assert {k.decode() for k in watched} == {f"bulk-{i}" for i in range(70, 1270)}
    due = before + int(rt.settings.watchdog_s * 1000)
    assert all(due <= s <= due + 60_000 for s in watched.values())
    for i in (70, 669, 670, 1269):
        ttl = rt.redis.ttl(keys.bind_record(f"bulk-{i}"))
        assert ttl > 9 * 3600 - 120
    rec = rt.store.get("bulk-700")
    assert rec is not None and rec.task_id == keys.task_id_for("bulk-700") and rec.attempts == 0
    assert rec.created_at_ms >= before and rec.deadline_ms == rec.expires_at_ms - 60_000


def test_single_enqueue_still_raises_and_records_nothing_on_a_conflict(rt: Runtime) -> None:
    enqueue_bind(req(80))
    with pytest.raises(IdempotencyConflictError, match="bulk-80"):
        enqueue_bind(req(80, PhoneNoB="13900028888"))
    assert queued_keys(rt) == ["bulk-80"]


def test_the_store_creates_many_records_per_call_in_order(redis_client: Any) -> None:
    """Rows beyond one script call, repeated keys inside and across calls, existing records."""
    store = BindStore(redis_client, "axb.q", watch_s=30)
    store.CREATE_BATCH = 7

    def row(key: str, fp: str = "") -> dict[str, Any]:
        return {
            "key": key,
            "task_id": keys.task_id_for(key),
            "request": json.dumps({"OutId": key, "城市": "杭州", "q": '"\\'}, ensure_ascii=False),
            "fingerprint": fp or "fp-" + key,
            "pool": "FC1",
            "deadline": now_ms() + 60_000,
            "expires_at": now_ms() + 120_000,
            "ttl_s": 3600,
        }

    store.create_many([row("old", "fp-old-1")])
    store.mark_published(["old"])
    rows = [row(f"k{i}") for i in range(20)] + [row("k3"), row("old"), row("k19", "other")]
    out = store.create_many(rows)
    assert [o.created for o in out] == [True] * 20 + [False] * 3
    assert (out[20].fingerprint, out[20].status, out[20].published) == ("fp-k3", "pending", False)
    assert (out[21].fingerprint, out[21].published) == ("fp-old-1", True)
    assert out[22].fingerprint == "fp-k19"
    rec = store.get("k5")
    assert rec is not None and rec.request == {"OutId": "k5", "城市": "杭州", "q": '"\\'}
    assert rec.status == "pending" and not rec.published and rec.action == "bind"
    assert redis_client.zcard(keys.watch("axb.q")) == 21
    assert store.create_many([]) == []


def test_marking_a_vanished_record_published_does_not_bring_it_back(redis_client: Any) -> None:
    store = BindStore(redis_client)
    store.mark_published(["gone"])
    assert not redis_client.exists(keys.bind_record("gone"))


def test_a_large_bulk_enqueue_records_and_queues_every_row(rt: Runtime) -> None:
    res = enqueue_binds([req(i, OutId=f"big-{i}") for i in range(5000)], chunk=2000)
    assert res.created == 5000 and sorted(queued_keys(rt)) == sorted(f"big-{i}" for i in range(5000))
    assert all(r is not None and r.published for r in rt.store.get_many(["big-0", "big-2500", "big-4999"]))


def _rows(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "key": f"{prefix}{i}",
            "task_id": keys.task_id_for(f"{prefix}{i}"),
            "request": "{}",
            "fingerprint": f"fp-{prefix}{i}",
            "pool": "FC1",
            "deadline": now_ms() + 60_000,
            "expires_at": now_ms() + 120_000,
            "ttl_s": 3600,
        }
        for i in range(n)
    ]


def in_use(client: Any) -> int:
    return len(client.connection_pool._in_use_connections)


def test_records_are_created_while_the_caller_works_and_read_afterwards(redis_client: Any) -> None:
    store = BindStore(redis_client, "axb.q")
    store.CREATE_BATCH = 4
    pending = store.start_create_many(_rows("a", 10))
    assert in_use(redis_client) == 1  # the answers wait on their connection
    out = pending.result()
    assert [o.created for o in out] == [True] * 10 and in_use(redis_client) == 0
    assert pending.result() is out
    assert redis_client.hget(keys.bind_record("a9"), "status") == "pending"


def test_a_create_whose_answers_are_lost_is_made_again(redis_client: Any) -> None:
    """The connection dropped after the calls went out: the calls are made again, and the rows
    they had created come back as existing, unpublished records with their own fingerprint."""
    store = BindStore(redis_client, "axb.q")
    store.CREATE_BATCH = 3
    pending = store.start_create_many(_rows("b", 7))
    pending.discard()
    assert in_use(redis_client) == 0
    out = pending.result()
    assert [(o.created, o.fingerprint, o.status, o.published) for o in out] == [
        (False, f"fp-b{i}", "pending", False) for i in range(7)
    ]


def test_a_script_redis_forgot_is_loaded_again(redis_client: Any) -> None:
    store = BindStore(redis_client, "axb.q")
    redis_client.script_flush()
    out = store.create_many(_rows("c", 5) + _rows("c", 1))
    assert [o.created for o in out] == [True] * 5 + [False]
    assert redis_client.exists(keys.bind_record("c4")) and in_use(redis_client) == 0


def test_a_script_error_is_raised_after_every_answer_is_read(redis_client: Any) -> None:
    store = BindStore(redis_client, "axb.q")
    bad = _rows("d", 2)
    bad[1]["ttl_s"] = "soon"  # EXPIRE refuses it: the script fails half-way
    with pytest.raises(redis.ResponseError):
        store.create_many(bad)
    assert in_use(redis_client) == 0
    assert store.create_many(_rows("e", 1))[0].created  # the connection is usable again
