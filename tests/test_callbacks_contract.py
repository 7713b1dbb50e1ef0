"""What issue 14's HTTP API builds on (CONTRACT_14, phase 1): the producers' callback arguments,
the records' callback fields, the done channel every terminal script publishes on, and the
result document. Real Redis; a real worker where a bind has to run."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.pipeline_fixture import apply_env, wait_until
from tests.test_pipeline import request
from tests.test_store import store_row
from worker import errors, keys
from worker.callbacks import bind_document, operation_document
from worker.errors import InvalidRequestError
from worker.producer import (
    BindResult,
    enqueue_bind,
    enqueue_binds,
    enqueue_extend,
    enqueue_unbind,
    get_op_result,
    get_result,
)
from worker.runtime import Runtime, get_runtime, reset_runtime
from worker.settings import Settings, reset_settings_cache
from worker.store import BindStore, now_ms

HOOK = "http://127.0.0.1:9/hooks/axb"


@pytest.fixture
def rt(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The producer's runtime on the test Redis, private callback targets allowed, no worker."""
    apply_env(
        monkeypatch, {"AXB_QUEUE": f"axb.test.{uuid.uuid4().hex[:8]}", "AXB_CALLBACK_ALLOW_PRIVATE": "true"}
    )
    runtime = get_runtime()
    yield runtime
    reset_runtime()
    reset_settings_cache()


def fields(r: redis.Redis, key: str) -> dict[str, str]:
    return {
        k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
        for k, v in r.hgetall(keys.bind_record(key)).items()
    }


# --- producer arguments and record fields ------------------------------------------------------


def test_a_bind_records_its_callback_url_and_whether_the_body_shows_numbers(rt: Runtime) -> None:
    """``callback_url`` / ``callback_numbers`` land in the record as set at creation; a bind
    without a URL has neither field."""
    enqueue_bind(request(1), callback_url=HOOK, callback_numbers=True)
    enqueue_bind(request(2), callback_url=HOOK)
    enqueue_bind(request(3))
    one, two, three = fields(rt.redis, "order-1"), fields(rt.redis, "order-2"), fields(rt.redis, "order-3")
    assert (one["callback_url"], one["callback_numbers"]) == (HOOK, "1")
    assert (two["callback_url"], two["callback_numbers"]) == (HOOK, "0")
    assert "callback_url" not in three and "callback_numbers" not in three
    res = get_result("order-1")
    assert res is not None and res.callback_url == HOOK and res.callback_numbers


def test_a_private_callback_url_is_refused_with_field_and_code_and_nothing_is_queued(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without AXB_CALLBACK_ALLOW_PRIVATE a loopback URL is refused before any record exists."""
    apply_env(monkeypatch, {"AXB_QUEUE": f"axb.test.{uuid.uuid4().hex[:8]}"})
    try:
        with pytest.raises(InvalidRequestError) as info:
            enqueue_bind(request(4), callback_url=HOOK)
        assert info.value.field == "CallbackUrl" and info.value.code == errors.CALLBACK_URL_REFUSED
        assert "loopback" in str(info.value)
        assert get_result("order-4") is None
    finally:
        reset_runtime()
        reset_settings_cache()


def test_in_a_batch_each_item_may_carry_its_own_url_and_a_refused_one_is_rejected_alone(rt: Runtime) -> None:
    """``(request, key, callback_url)`` items override the batch's URL; a bad URL rejects only
    its item, with its index."""
    other = "http://127.0.0.1:9/other"
    out = enqueue_binds(
        [
            request(10),
            (request(11), None, other),
            (request(12), "k-12", "ftp://127.0.0.1/x"),
            (request(13), "k-13"),
        ],
        callback_url=HOOK,
        callback_numbers=True,
    )
    assert [i for i, _ in out.rejected] == [2]
    err = out.rejected[0][1]
    assert isinstance(err, InvalidRequestError) and err.field == "CallbackUrl"
    assert err.code == errors.CALLBACK_URL_REFUSED
    assert [h.key for h in out.handles] == ["order-10", "order-11", "k-13"]
    assert fields(rt.redis, "order-10")["callback_url"] == HOOK
    assert fields(rt.redis, "order-11")["callback_url"] == other
    assert fields(rt.redis, "k-13")["callback_url"] == HOOK
    assert fields(rt.redis, "k-13")["callback_numbers"] == "1"
    assert not rt.redis.exists(keys.bind_record("k-12"))


def test_the_same_request_again_with_another_url_is_no_conflict_and_keeps_the_first_url(rt: Runtime) -> None:
    """The URL is not part of the request's fingerprint: the first one stays."""
    first = enqueue_bind(request(20), callback_url=HOOK)
    again = enqueue_bind(request(20), callback_url="http://127.0.0.1:9/second")
    bare = enqueue_bind(request(20))
    assert first.created and not again.created and not bare.created
    assert fields(rt.redis, "order-20")["callback_url"] == HOOK


def test_unbind_and_extend_record_their_own_callback_url(rt: Runtime) -> None:
    """Operations carry the callback fields on their own records, not on the bind's."""
    enqueue_bind(request(30))
    unbind = enqueue_unbind("order-30", callback_url=HOOK, callback_numbers=True)
    extend = enqueue_extend("order-30", _later(), callback_url=HOOK)
    assert (
        fields(rt.redis, unbind.key)["callback_url"],
        fields(rt.redis, unbind.key)["callback_numbers"],
    ) == (
        HOOK,
        "1",
    )
    assert fields(rt.redis, extend.key)["callback_numbers"] == "0"
    assert "callback_url" not in fields(rt.redis, "order-30")
    with pytest.raises(InvalidRequestError) as info:
        enqueue_unbind("order-30", callback_url="gopher://127.0.0.1/")
    assert info.value.code == errors.CALLBACK_URL_REFUSED


def _later() -> str:
    from tests.test_pipeline import expiration

    return expiration(120)


def test_bind_keys_may_not_look_like_callback_deliveries(rt: Runtime) -> None:
    """``callback:`` is reserved, like ``unbind:`` and ``extend:``."""
    with pytest.raises(InvalidRequestError) as info:
        enqueue_bind(request(40), idempotency_key="callback:order-40")
    assert info.value.field == "IdempotencyKey" and "callback:" in str(info.value)
    assert keys.action_of(keys.callback_job("order-40", 1)) == "callback"


# --- the done channel ---------------------------------------------------------------------------


class Channels:
    """A subscriber on the done channels of some keys (subscribed before anything happens)."""

    def __init__(self, client: redis.Redis, *key_list: str) -> None:
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(*[keys.done_channel(k) for k in key_list])
        for _ in key_list:
            msg = self.pubsub.get_message(timeout=5)
            assert msg is not None and msg["type"] == "subscribe"

    def next(self) -> tuple[str, str]:
        msg = self.pubsub.get_message(timeout=5)
        assert msg is not None and msg["type"] == "message", msg
        channel, data = msg["channel"], msg["data"]
        return (
            channel.decode() if isinstance(channel, bytes) else channel,
            data.decode() if isinstance(data, bytes) else data,
        )

    def close(self) -> None:
        self.pubsub.close()


def test_every_terminal_script_publishes_the_new_status_on_the_done_channel(
    redis_client: redis.Redis,
) -> None:
    """succeed, dead-letter, cancel (by the unbind, and by the bind's own attempt) and an
    operation's success each publish once; a retry (not terminal) publishes nothing."""
    store = BindStore(redis_client)
    store.create_many([store_row("ok"), store_row("dead"), store_row("cancel-now"), store_row("cancel-late")])
    subs = Channels(redis_client, "ok", "dead", "cancel-now", "cancel-late", "unbind:cancel-late")
    try:
        store.begin_attempt("ok", {"nonce": "n"})
        store.schedule("ok", due_ms=now_ms() + 10_000, code="isp.SYSTEM_ERROR")
        assert (
            store.succeed(
                "ok", {"SecretNo": "17100000000", "SubsId": "1"}, "RID", now_ms() // 1000 + 99, None
            )
            == 1
        )
        assert subs.next() == (keys.done_channel("ok"), "succeeded")

        assert store.dead_letter("dead", code="isv.X", message="m") is not None
        assert subs.next() == (keys.done_channel("dead"), "dead_lettered")

        assert store.try_cancel("cancel-now", "unbind:cancel-now") == 1
        assert subs.next() == (keys.done_channel("cancel-now"), "cancelled")

        op = store_row("unbind:cancel-late", action="unbind", target="cancel-late")
        assert store.create_ops([op])[0].created
        assert store.begin_attempt("cancel-late", None) == -2
        assert subs.next() == (keys.done_channel("cancel-late"), "cancelled")

        assert (
            store.op_succeed(
                "unbind:cancel-late",
                result={"Outcome": "cancelled"},
                request_id="",
                expire_at_s=now_ms() // 1000 + 99,
                hist=None,
            )
            == 1
        )
        assert subs.next() == (keys.done_channel("unbind:cancel-late"), "succeeded")

        # Already terminal: nothing changes, so nothing more is published before this marker.
        assert store.succeed("ok", {"SecretNo": "1", "SubsId": "1"}, "RID", now_ms() // 1000 + 99, None) == 0
        redis_client.publish(keys.done_channel("ok"), "marker")
        assert subs.next() == (keys.done_channel("ok"), "marker")
    finally:
        subs.close()


def test_a_subscriber_that_subscribes_then_reads_then_waits_sees_the_outcome(
    celery_worker: Any, pipeline: Runtime
) -> None:
    """The long-poll pattern of ``?wait``: subscribe, read the record, wait on the channel."""
    handle = enqueue_bind(request(50))
    subs = Channels(pipeline.redis, handle.key)
    try:
        rec = pipeline.store.get(handle.key)
        assert rec is not None
        status = rec.status if rec.terminal else subs.next()[1]
        assert status == "succeeded"
        assert get_result(handle.key).status == "succeeded"  # type: ignore[union-attr]
    finally:
        subs.close()


def test_a_finished_record_with_a_callback_wakes_a_pump_at_once(redis_client: redis.Redis) -> None:
    """The terminal write schedules the delivery (due now, watched) and pushes a wake-up token:
    a pump idle in a 30 s poll publishes it within a moment."""
    from worker.queue import DelayQueue, Pump

    store = BindStore(redis_client)
    store.create_many([store_row("woken", callback_url=HOOK, callback_numbers=False)])
    queue = DelayQueue(redis_client)
    queue.schedule("first", now_ms() - 1)
    published: list[str] = []
    pump = Pump(queue, published.extend, idle_sleep_s=30, wake_key=keys.delay_wake("axb.bind"))
    pump.start()
    try:
        wait_until(lambda: published == ["first"], timeout=5)  # its first pass is over: now idle
        assert store.dead_letter("woken", code="isv.X", message="m") is not None
        wait_until(lambda: len(published) == 2, timeout=5)
    finally:
        pump.stop()
    job_key = published[1]
    assert job_key.startswith("callback:woken@") and keys.action_of(job_key) == "callback"
    assert redis_client.zscore(keys.watch("axb.bind"), job_key) is not None
    job = store.get(job_key)
    assert job is not None and job.action == "callback" and job.target == "woken"
    assert (job.status, job.callback_url, job.callback_numbers) == ("pending", HOOK, False)
    assert job.request == {"IdempotencyKey": "woken", "Action": "bind", "Outcome": "dead_lettered"}


# --- the result document --------------------------------------------------------------------------

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_the_document_of_a_bind_masks_numbers_unless_asked_and_is_json_ready(
    celery_worker: Any, pipeline: Runtime
) -> None:
    """Vendor names in ``request`` and ``SecretBindDTO``; ISO time; the same document masked
    and shown differs only in the numbers."""
    res = enqueue_bind(request(60)).result(timeout=15)
    assert res.ok and res.dto is not None
    shown = bind_document(res, show_numbers=True)
    masked = bind_document(res, show_numbers=False)
    assert json.loads(json.dumps(shown)) == shown
    assert set(shown) == {
        "key",
        "kind",
        "status",
        "state",
        "attempts",
        "code",
        "message",
        "request",
        "SecretBindDTO",
        "possible_orphan",
        "updated_at",
    }
    assert shown["possible_orphan"] is False
    assert (shown["key"], shown["kind"], shown["status"], shown["state"]) == (
        "order-60",
        "bind",
        "succeeded",
        "bound",
    )
    assert shown["attempts"] == 1 and shown["code"] == "OK" and ISO.match(shown["updated_at"])
    assert shown["request"]["PhoneNoA"] == "13800000060" and shown["request"]["PoolKey"] == "FC100000001"
    assert shown["SecretBindDTO"] == {
        "SecretNo": res.dto.secret_no,
        "SubsId": res.dto.subs_id,
        "Extension": res.dto.extension,
    }
    assert masked["request"]["PhoneNoA"] == "138****0060" and masked["request"]["PhoneNoB"] == "139****0060"
    assert (
        masked["SecretBindDTO"]["SecretNo"] != res.dto.secret_no
        and "****" in masked["SecretBindDTO"]["SecretNo"]
    )
    assert masked["SecretBindDTO"]["SubsId"] == res.dto.subs_id
    assert "13800000060" not in json.dumps(masked) and res.dto.secret_no not in json.dumps(masked)


def test_the_document_of_a_dead_lettered_bind_has_its_code_and_no_dto() -> None:
    """A bind that failed: status, code and message, ``SecretBindDTO`` null (no Redis needed)."""
    res = BindResult(
        key="k",
        status="dead_lettered",
        code="isv.MOBILE_NUMBER_ILLEGAL",
        message="bad 13800000001",
        attempts=1,
        updated_at=1_764_496_800_000,
        request={"PhoneNoA": "13800000001"},
    )
    doc = bind_document(res, show_numbers=False)
    assert doc["SecretBindDTO"] is None and doc["state"] == "dead_lettered"
    assert doc["code"] == "isv.MOBILE_NUMBER_ILLEGAL" and doc["message"] == "bad 138****0001"
    assert doc["updated_at"] == "2025-11-30T10:00:00.000Z"


def test_the_documents_of_an_extend_and_an_unbind_name_the_binding_they_acted_on(
    celery_worker: Any, pipeline: Runtime
) -> None:
    """``kind``, ``outcome``, SubsId, SecretNo (masked unless asked) and the new Expiration."""
    bound = enqueue_bind(request(70)).result(timeout=15)
    assert bound.ok and bound.dto is not None
    later = _later()
    ext = enqueue_extend("order-70", later).result(timeout=15)
    doc = operation_document(ext, show_numbers=True)
    assert set(doc) == {
        "key",
        "kind",
        "status",
        "outcome",
        "attempts",
        "code",
        "message",
        "SubsId",
        "SecretNo",
        "Expiration",
        "updated_at",
    }
    assert (doc["kind"], doc["status"], doc["outcome"], doc["Expiration"]) == (
        "extend",
        "succeeded",
        "extended",
        later,
    )
    assert doc["SubsId"] == bound.dto.subs_id and doc["SecretNo"] == bound.dto.secret_no
    unbound = enqueue_unbind("order-70").result(timeout=15)
    masked = operation_document(unbound, show_numbers=False)
    assert (masked["kind"], masked["outcome"], masked["key"]) == ("unbind", "unbound", "unbind:order-70")
    assert masked["SecretNo"] != bound.dto.secret_no and "****" in masked["SecretNo"]
    assert get_op_result("unbind:order-70") is not None
