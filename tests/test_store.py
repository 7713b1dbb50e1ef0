"""The record store and the delay queue, against a real Redis."""

from __future__ import annotations

import json

import pytest
import redis

from tests.waiting import wait_until, watch_overdue
from worker import keys
from worker.queue import DelayQueue, Pump
from worker.store import (
    DEAD_LETTERED,
    PENDING,
    RETRYING,
    START_BUSY,
    START_GO,
    SUCCEEDED,
    BindStore,
    now_ms,
)


def store_row(key: str, **over: object) -> dict[str, object]:
    """A row for ``BindStore.create_many`` (shared by the store, lifecycle and callback tests)."""
    row: dict[str, object] = {
        "key": key,
        "task_id": keys.task_id_for(key),
        "request": json.dumps({"PoolKey": "FC1"}),
        "fingerprint": "fp-" + key,
        "pool": "FC1",
        "deadline": now_ms() + 60_000,
        "expires_at": now_ms() + 120_000,
        "ttl_s": 3600,
    }
    row.update(over)
    return row


def test_creating_a_key_twice_keeps_the_first_record_and_reports_it(redis_client: redis.Redis) -> None:
    """The second create of a key changes nothing and tells the caller what is there."""
    store = BindStore(redis_client)
    first, second = store.create_many([store_row("k1"), store_row("k1", fingerprint="other")])
    assert first.created and first.status == PENDING
    assert not second.created and second.fingerprint == "fp-k1"
    rec = store.get("k1")
    assert rec is not None and rec.fingerprint == "fp-k1" and rec.attempts == 0
    assert 3500 < redis_client.ttl(keys.bind_record("k1")) <= 3600


def test_a_terminal_record_never_leaves_its_state(redis_client: redis.Redis) -> None:
    """After success, scheduling or dead-lettering the key is refused."""
    store = BindStore(redis_client)
    store.create_many([store_row("k2")])
    assert store.begin_attempt("k2", {"nonce": "n1"}) == 1
    assert (
        store.succeed("k2", {"SecretNo": "17100000000", "SubsId": "1"}, "RID", now_ms() // 1000 + 99, None)
        == 1
    )
    assert store.schedule("k2", due_ms=now_ms()) == 0
    assert store.dead_letter("k2", code="isv.X", message="m") is None
    assert store.begin_attempt("k2", None) == -1
    rec = store.get("k2")
    assert rec is not None and rec.status == SUCCEEDED and rec.inflight is None
    assert redis_client.xlen(keys.DEAD_LETTERS) == 0
    assert redis_client.zscore(keys.delayed("axb.bind"), "k2") is None


def test_dead_lettering_writes_the_record_and_the_stream_together(redis_client: redis.Redis) -> None:
    """The stream entry carries the request, code, attempts and history; the record points at it."""
    store = BindStore(redis_client)
    store.create_many([store_row("k3")])
    store.begin_attempt("k3", None)
    store.schedule(
        "k3",
        due_ms=now_ms() + 10_000,
        code="isp.SYSTEM_ERROR",
        hist={"attempt": 1, "code": "isp.SYSTEM_ERROR"},
    )
    assert redis_client.zscore(keys.delayed("axb.bind"), "k3") is not None
    store.begin_attempt("k3", None)
    entry_id = store.dead_letter(
        "k3",
        code="isv.POOLKEY_NOT_EXISTS",
        message="no pool",
        request_id="R2",
        hist={"attempt": 2, "code": "isv.POOLKEY_NOT_EXISTS"},
    )
    assert entry_id
    rec = store.get("k3")
    assert rec is not None and rec.status == DEAD_LETTERED and rec.dlq_id == entry_id
    assert redis_client.zscore(keys.delayed("axb.bind"), "k3") is None
    ((eid, fields),) = redis_client.xrange(keys.DEAD_LETTERS)
    assert eid == entry_id
    assert fields["code"] == "isv.POOLKEY_NOT_EXISTS" and fields["attempts"] == "2"
    assert json.loads(fields["request"]) == {"PoolKey": "FC1"}
    assert [h["code"] for h in json.loads(fields["history"])] == [
        "isp.SYSTEM_ERROR",
        "isv.POOLKEY_NOT_EXISTS",
    ]


def test_scheduling_can_keep_or_drop_the_inflight_request(redis_client: redis.Redis) -> None:
    """An unanswered attempt keeps its signed request; a definitive answer drops it."""
    store = BindStore(redis_client)
    store.create_many([store_row("k4")])
    store.begin_attempt("k4", {"nonce": "abc"})
    store.schedule("k4", due_ms=now_ms(), keep_inflight=True, code="axb.READ_TIMEOUT")
    rec = store.get("k4")
    assert rec is not None and rec.inflight == {"nonce": "abc"} and rec.status == RETRYING
    store.schedule("k4", due_ms=now_ms(), keep_inflight=False, code="isp.SYSTEM_ERROR")
    rec = store.get("k4")
    assert rec is not None and rec.inflight is None


def test_a_lease_is_held_by_one_delivery_at_a_time(redis_client: redis.Redis) -> None:
    """A second delivery cannot take the lease (the key waits on the delay queue until it runs
    out); only its holder can release it."""
    store = BindStore(redis_client)
    store.create_many([store_row("k5")])
    assert store.start("k5", "a", 5, "acct").what == START_GO
    assert store.start("k5", "b", 5, "acct").what == START_BUSY
    assert store.delayed_due_at("k5") is not None
    store.release_lease("k5", "b")
    assert redis_client.get(keys.bind_lease("k5")) in (b"a", "a")
    store.release_lease("k5", "a")
    assert not redis_client.exists(keys.bind_lease("k5"))
    redis_client.zrem(keys.delayed("axb.bind"), "k5")
    assert store.start("k5", "b", 5, "acct").what == START_GO


def test_the_pump_publishes_due_keys_once_and_recovers_stale_claims(redis_client: redis.Redis) -> None:
    """Due keys are published and confirmed; a claim whose publisher died goes back to the queue."""
    q = DelayQueue(redis_client)
    published: list[str] = []
    pump = Pump(q, published.extend)
    q.schedule("due", now_ms() - 1)
    q.schedule("later", now_ms() + 60_000)
    assert pump.run_once() == 1
    assert published == ["due"]
    assert redis_client.zcard(keys.delayed_claimed("axb.bind")) == 0
    assert pump.run_once() == 0

    q.schedule("orphan", now_ms() - 1)
    assert q.claim_due() == ["orphan"]  # claimed, then the publisher "dies"
    assert q.recover_stale(older_than_ms=0) == 1
    assert pump.run_once() == 1 and published[-1] == "orphan"


def test_a_failing_publish_leaves_the_claim_for_recovery(redis_client: redis.Redis) -> None:
    """If publishing raises, the key stays claimed and is recovered, never lost."""
    q = DelayQueue(redis_client)

    def broken(_: object) -> None:
        raise ConnectionError("broker down")

    pump = Pump(q, broken)
    q.schedule("k", now_ms() - 1)
    with pytest.raises(ConnectionError):
        pump.run_once()
    assert redis_client.zscore(keys.delayed_claimed("axb.bind"), "k") is not None
    assert q.recover_stale(older_than_ms=0) == 1
    assert redis_client.zscore(keys.delayed("axb.bind"), "k") is not None


def test_the_watchdog_republishes_only_keys_whose_message_is_nowhere(redis_client: redis.Redis) -> None:
    """Lost → published again; queued, unacknowledged, leased, delayed → left alone; finished → unwatched."""
    from worker.queue import Watchdog

    q = "axb.wd"
    store = BindStore(redis_client, q, watch_s=0.001)
    for k in ("lost", "queued", "unacked", "leased", "delayed", "done"):
        store.create_many([store_row(k)])
    assert redis_client.zcard(keys.watch(q)) == 6
    # What kombu's Redis transport stores: the list entry and the unacked hash entry.
    redis_client.lpush(q, json.dumps({"body": "e30=", "headers": {"id": keys.task_id_for("queued")}}))
    redis_client.hset(
        "unacked", "tag-1", json.dumps([{"headers": {"id": keys.task_id_for("unacked")}}, "", q])
    )
    assert store.start("leased", "d1", 30, "acct").what == START_GO
    DelayQueue(redis_client, q).schedule("delayed", now_ms() + 60_000)
    store.succeed("done", {"SecretNo": "x"}, "rid", int(now_ms() / 1000) + 60, None)

    published: list[str] = []
    wd = Watchdog(redis_client, q, watch_s=30, publish=published.extend)
    wait_until(lambda: watch_overdue(redis_client, q))
    assert wd.sweep() == 1
    assert published == ["lost"]
    watched = dict(redis_client.zrange(keys.watch(q), 0, -1, withscores=True))
    assert set(watched) == {"lost", "queued", "unacked", "leased", "delayed"}  # "done" unwatched
    assert min(watched.values()) > now_ms() + 20_000  # looked at again one period later
    assert wd.sweep() == 0  # nothing overdue now


def test_the_watchdog_trusts_a_backlog_too_long_to_scan(redis_client: redis.Redis) -> None:
    """With more messages queued than it may scan, an overdue key is assumed queued, not republished."""
    from worker.queue import Watchdog

    q = "axb.wd2"
    store = BindStore(redis_client, q, watch_s=0.001)
    store.create_many([store_row("k")])
    redis_client.rpush(q, *[b"{}"] * 5)
    published: list[str] = []
    wait_until(lambda: watch_overdue(redis_client, q))
    assert Watchdog(redis_client, q, watch_s=30, publish=published.extend, scan_max=3).sweep() == 0
    assert published == [] and redis_client.zscore(keys.watch(q), "k") is not None
