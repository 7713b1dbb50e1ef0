"""Many bind keys per Celery message (``axb.bind_many``): bulk enqueues and the delay queue.

Each key of a batch must end exactly as it would alone: its own record, lease, retries, result
and dead letter; one vendor binding per key; nothing lost when the batch is cut short.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from tests.pipeline_fixture import apply_env, wait_until
from tests.test_pipeline import bindings_for, calls_for, request
from tests.waiting import watch_overdue
from worker import errors, keys
from worker.deadletters import DeadLetters
from worker.producer import enqueue_binds, get_result
from worker.queue import Watchdog
from worker.runtime import Runtime, get_runtime


def queued(rt: Runtime) -> list[tuple[str, list[str], dict[str, Any]]]:
    """(task name, keys, headers) of each message on the queue, oldest first."""
    out = []
    for raw in reversed(rt.redis.lrange(rt.settings.queue, 0, -1)):
        msg = json.loads(raw)
        args = json.loads(base64.b64decode(msg["body"]))[0]
        out.append(
            (msg["headers"]["task"], args[0] if isinstance(args[0], list) else [args[0]], msg["headers"])
        )
    return out


def run_worker(rt: Runtime, concurrency: int = 4) -> Any:
    from celery.contrib.testing.worker import start_worker

    from worker.celery_app import app

    return start_worker(
        app,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=20,
        queues=[rt.settings.queue],
    )


def test_a_bulk_enqueue_carries_many_keys_per_message_and_each_key_binds_once(
    pipeline: Runtime, simulator: Any
) -> None:
    """45 binds in one enqueue_binds call: 3 messages (20 + 20 + 5 keys), not 45; then 45 results,
    one call and one binding each, stored under each key."""
    from worker.queue import start_pump, stop_pump

    res = enqueue_binds([request(i) for i in range(45)])
    assert not res.rejected and res.created == 45
    msgs = queued(pipeline)
    assert [(task, len(ks)) for task, ks, _ in msgs] == [
        ("axb.bind_many", 20),
        ("axb.bind_many", 20),
        ("axb.bind_many", 5),
    ]
    assert [k for _, ks, _ in msgs for k in ks] == [f"order-{i}" for i in range(45)]
    # The members' task ids travel in a header (the watchdog looks for them there).
    assert msgs[0][2]["axb_task_ids"] == [h.task_id for h in res.handles[:20]]
    with run_worker(pipeline):
        start_pump()
        try:
            results = [h.result(timeout=30) for h in res.handles]
        finally:
            stop_pump()
    assert all(r.ok and r.attempts == 1 for r in results)
    for i in range(45):
        assert len(bindings_for(simulator, f"order-{i}")) == 1
        assert len(calls_for(simulator, f"order-{i}")) == 1
    assert len({r.dto.secret_no for r in results if r.dto}) >= 1


def test_each_key_of_a_batch_gets_its_own_retries_and_dead_letter(celery_worker: Any, simulator: Any) -> None:
    """A batch whose first calls fail transiently and one of whose keys is refused for good: the
    refused key alone is dead-lettered (with its code), the others retry and bind once."""
    simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=4)
    reqs = [request(i) for i in range(100, 112)]
    reqs[5] = request(105, PoolKey="FC999999999")
    res = enqueue_binds(reqs)
    assert not res.rejected
    results = {h.key: h.result(timeout=30) for h in res.handles}
    assert results["order-105"].status == "dead_lettered"
    assert results["order-105"].code == "isv.POOLKEY_NOT_EXISTS"
    for i in range(100, 112):
        if i == 105:
            continue
        r = results[f"order-{i}"]
        assert r.ok, r
        assert len(bindings_for(simulator, f"order-{i}")) == 1
    retried = [r for r in results.values() if r.ok and r.attempts > 1]
    assert retried, "the forced transient answers were retried"
    assert [e.key for e in DeadLetters(get_runtime().redis).entries()] == ["order-105"]


def test_a_batch_running_out_of_time_publishes_the_rest_again(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a 1 s budget and a 300 ms vendor, a batch of 10 starts a few keys and puts the rest back
    on the queue as a new message; nothing is lost and each key still binds once."""
    from worker.execution import deliver_many

    apply_env(
        monkeypatch,
        {
            "AXB_SOFT_TIME_LIMIT_S": "4.5",
            "AXB_HARD_TIME_LIMIT_S": "6",
            "AXB_VISIBILITY_TIMEOUT_S": "20",
            "AXB_READ_TIMEOUT_S": "2",
            "AXB_CONNECT_TIMEOUT_S": "0.5",
            "AXB_INLINE_WAIT_MAX_S": "1",
        },
    )
    rt = get_runtime()
    assert rt.settings.batch_budget_s == 1.0
    simulator.set_faults(latency_ms=300)
    res = enqueue_binds([request(i) for i in range(200, 210)])
    ((_, batch, _),) = queued(rt)
    rt.redis.delete(rt.settings.queue)  # worked on directly below, as a worker would
    outcomes = deliver_many(rt, batch, "test-delivery")
    done = [o.key for o in outcomes if o.status == "succeeded"]
    rest = [o.key for o in outcomes if o.status == "requeued"]
    assert 2 <= len(done) <= 6 and done + rest == batch
    ((task, again, _),) = queued(rt)
    assert again == rest and task in ("axb.bind_many", "axb.bind")
    # The keys given back hold no lease and count no start (they were started with the batch).
    for k in rest:
        rec = rt.store.get(k)
        assert rec is not None and rec.starts == 0 and rec.attempts == 0
        assert not rt.redis.exists(keys.bind_lease(k))
    simulator.set_faults(latency_ms=0)
    with run_worker(rt):
        results = [h.result(timeout=30) for h in res.handles]
    assert all(r.ok and r.attempts == 1 for r in results)
    assert all(len(bindings_for(simulator, f"order-{i}")) == 1 for i in range(200, 210))


def test_a_key_whose_earlier_delivery_died_leaves_its_batch_and_goes_alone(
    pipeline: Runtime, simulator: Any
) -> None:
    """A batch redelivered after its worker died mid-key: that key (possibly poison) is sent on as
    a message of its own and counted there; the other keys are worked on in the batch."""
    from worker.execution import deliver_many

    res = enqueue_binds([request(i) for i in range(300, 304)])
    ((_, batch, _),) = queued(pipeline)
    pipeline.redis.delete(pipeline.settings.queue)
    # An earlier delivery started order-301 and died (its lease has run out since).
    first = pipeline.store.start("order-301", "dead-delivery", 0.001, pipeline.settings.access_key_id)
    assert first.starts == 1
    wait_until(lambda: not pipeline.redis.exists(keys.bind_lease("order-301")))  # its lease has run out
    outcomes = {o.key: o.status for o in deliver_many(pipeline, batch, "second-delivery")}
    assert outcomes == {
        "order-300": "succeeded",
        "order-301": "split",
        "order-302": "succeeded",
        "order-303": "succeeded",
    }
    rec = pipeline.store.get("order-301")
    assert rec is not None and rec.starts == 1 and rec.status == "pending"  # the count is kept, not doubled
    assert not pipeline.redis.exists(keys.bind_lease("order-301"))  # its lease was given back
    ((task, alone, _),) = queued(pipeline)
    assert (task, alone) == ("axb.bind", ["order-301"])
    with run_worker(pipeline):
        assert res.handles[1].result(timeout=20).ok
    assert len(bindings_for(simulator, "order-301")) == 1


def test_the_watchdog_sees_keys_inside_batch_messages(
    pipeline: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overdue keys whose batch message is still queued are alive; once that message is lost, they
    are published again (as a batch)."""
    apply_env(monkeypatch, {"AXB_WATCHDOG_S": "0.1"})
    rt = get_runtime()
    res = enqueue_binds([request(i) for i in range(400, 405)])
    assert len(queued(rt)) == 1
    wait_until(lambda: watch_overdue(rt.redis, rt.settings.queue))
    dog = Watchdog(rt.redis, rt.settings.queue, 0.1, lambda ks: rt.publish(ks, batch=True), lock_ms=1)
    assert dog.sweep() == 0
    assert len(queued(rt)) == 1
    rt.redis.delete(rt.settings.queue)
    wait_until(lambda: watch_overdue(rt.redis, rt.settings.queue))
    wait_until(lambda: dog.sweep() == 5, timeout=5)
    ((task, again, _),) = queued(rt)
    assert task == "axb.bind_many" and sorted(again) == sorted(h.key for h in res.handles)


def test_a_malformed_batch_message_is_dead_lettered_and_work_goes_on(
    celery_worker: Any, pipeline: Runtime
) -> None:
    """A bind_many message without a list of keys is kept for on-call; the masked raw text is kept."""
    from worker.celery_app import app

    q = pipeline.settings.queue
    app.send_task("axb.bind_many", args=["13800000123"], queue=q)
    app.send_task("axb.bind_many", args=[[]], queue=q)
    res = enqueue_binds([request(500), request(501)])
    assert all(h.result(timeout=15).ok for h in res.handles)
    dead = DeadLetters(pipeline.redis)
    wait_until(lambda: len(dead.entries()) == 2, timeout=10)
    entries = dead.entries()
    assert [e.code for e in entries] == [errors.MALFORMED_MESSAGE] * 2
    assert all("13800000123" not in e.raw for e in entries)
    assert get_result("order-500") is not None


def test_a_hold_on_the_account_set_mid_batch_stops_the_next_call(pipeline: Runtime) -> None:
    """The account hold is checked in the same step that records a call as going out, so a
    hold set after a batch started (by another worker) stops that batch's next call."""
    res = enqueue_binds([request(600), request(601)])
    acct = pipeline.settings.access_key_id
    before = pipeline.store.start_many([(h.key, f"t{i}") for i, h in enumerate(res.handles)], 10, acct)
    assert [st.hold for st in before] == [None, None]
    pipeline.holds.hold_account(acct, "isv.ACCOUNT_ABNORMAL", "closed", 5)
    assert pipeline.store.begin_attempt("order-600", {"nonce": "n"}, account=acct) == -3
    rec = pipeline.store.get("order-600")
    assert rec is not None and rec.attempts == 0 and rec.inflight is None  # nothing written
    assert pipeline.store.begin_attempt("order-601", {"nonce": "n"}) == 1  # no account given: no check


def test_a_call_refused_a_slot_is_not_counted_and_waits_on_the_delay_queue(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot and the record of the call are taken in one round trip; when no slot is free
    within the inline wait, the record is put back as it was (no attempt counted, no request kept)
    and the key waits on the delay queue for about when one frees up."""
    from worker.execution import deliver_many

    apply_env(
        monkeypatch, {"AXB_RATE_LIMIT_QPS": "0.5", "AXB_RATE_LIMIT_BURST": "1", "AXB_INLINE_WAIT_MAX_S": "0"}
    )
    rt = get_runtime()
    enqueue_binds([request(700), request(701), request(702), request(703)])
    rt.redis.delete(rt.settings.queue)
    t0 = time.time()
    outcomes = deliver_many(rt, ["order-700", "order-701", "order-702", "order-703"], "d")
    assert [o.status for o in outcomes] == ["succeeded", "pending", "parked", "parked"]
    rec = rt.store.get("order-701")
    assert rec is not None and rec.attempts == 0 and rec.inflight is None and rec.first_attempt_at_ms is None
    due = rt.store.delayed_due_at("order-701")
    assert due is not None and t0 * 1000 + 1000 < due < t0 * 1000 + 3000  # about 2 s: the next slot at 0.5/s
    assert len(calls_for(simulator, "order-701")) == 0 and len(calls_for(simulator, "order-700")) == 1
    assert not rt.redis.exists(keys.bind_lease("order-701"))
    # The rest of the batch is not refused key by key: it waits too, spread at the rate (2 s apart).
    assert rt.store.delayed_due_at("order-702") == due + 2000
    assert rt.store.delayed_due_at("order-703") == due + 4000
    for k in ("order-702", "order-703"):
        r = rt.store.get(k)
        assert r is not None and r.attempts == 0 and r.starts == 0 and not rt.redis.exists(keys.bind_lease(k))
        assert not calls_for(simulator, k)


def test_a_batch_message_shows_flower_masked_keys_and_no_numbers(pipeline: Runtime) -> None:
    """Keys that hold phone numbers are masked in a batch message's argsrepr; the requests' own
    numbers are nowhere in the message."""
    enqueue_binds([(request(800 + i), f"call-1380000{800 + i:04d}") for i in range(3)])
    (raw,) = pipeline.redis.lrange(pipeline.settings.queue, 0, -1)
    msg = json.loads(raw)
    assert msg["headers"]["task"] == "axb.bind_many"
    assert msg["headers"]["argsrepr"] == "[['call-138****0800', 'call-138****0801', 'call-138****0802']]"
    assert b"13900000800" not in raw and b"13800000800" not in raw.replace(b"call-13800000800", b"")


def test_a_worker_shutting_down_gives_the_rest_of_a_batch_back_at_once(
    pipeline: Runtime, simulator: Any
) -> None:
    """On a warm shutdown (SIGTERM) a batch finishes the key it is on and publishes the others
    again, leases freed and starts undone, instead of holding them through the soft shutdown."""
    from celery.signals import worker_shutting_down

    from worker.execution import deliver_many
    from worker.queue import STOPPING

    enqueue_binds([request(900), request(901), request(902)])
    pipeline.redis.delete(pipeline.settings.queue)
    worker_shutting_down.send(sender="test", sig="SIGTERM", how="Warm", exitcode=0)
    try:
        assert STOPPING.is_set()
        outcomes = deliver_many(pipeline, ["order-900", "order-901", "order-902"], "d")
    finally:
        STOPPING.clear()
    assert [o.status for o in outcomes] == ["succeeded", "requeued", "requeued"]
    ((task, again, _),) = queued(pipeline)
    assert (task, again) == ("axb.bind_many", ["order-901", "order-902"])
    for k in again:
        rec = pipeline.store.get(k)
        assert rec is not None and rec.starts == 0 and not pipeline.redis.exists(keys.bind_lease(k))


def test_keys_parked_by_different_batches_queue_up_at_the_rate(pipeline: Runtime) -> None:
    """Two batches parked for the same scope form one line: the second starts where the first
    ends, so the keys come back one per slot rather than all together."""
    enqueue_binds([request(i) for i in range(950, 956)])
    acct = pipeline.settings.access_key_id
    items = [(f"order-{i}", f"t{i}") for i in range(950, 956)]
    pipeline.store.start_many(items, 10, acct)
    t = int(time.time() * 1000) + 1000
    pipeline.store.park(items[:3], scope="account:x", earliest_ms=t, step_ms=100)
    pipeline.store.park(items[3:], scope="account:x", earliest_ms=t, step_ms=100)
    dues = [pipeline.store.delayed_due_at(k) for k, _ in items]
    assert dues == [t, t + 100, t + 200, t + 300, t + 400, t + 500]
    for k, _ in items:
        rec = pipeline.store.get(k)
        assert rec is not None and rec.starts == 0 and not pipeline.redis.exists(keys.bind_lease(k))
