"""The binding pipeline end to end: producer → Redis → Celery worker → simulator → result / DLQ."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.waiting import finished_result, queue_settled, wait_until
from worker import errors, keys
from worker.deadletters import DeadLetters
from worker.errors import IdempotencyConflictError, InvalidRequestError
from worker.producer import enqueue_bind, get_result
from worker.runtime import Runtime

CST = UTC  # Expiration strings below are built in UTC+8 explicitly


# Expirations count from one instant per process, not from each call: a request built twice in
# one test (the same key sent again) must be the same request, also across a second boundary.
# A session lasts minutes, so "60 minutes ahead" stays well ahead of the vendor's 1-minute minimum.
_EXPIRATION_BASE = datetime.now(UTC)


def expiration(minutes: float = 60) -> str:
    at = _EXPIRATION_BASE + timedelta(hours=8, minutes=minutes)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def request(i: int = 0, **over: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"1380000{i:04d}",
        "PhoneNoB": f"1390000{i:04d}",
        "Expiration": expiration(),
        "OutId": f"order-{i}",
    }
    req.update(over)
    return req


def bindings_for(sim: Any, out_id: str) -> list[Any]:
    return list(sim.ledger()["bindings_by_out_id"].get(out_id, []))


def calls_for(sim: Any, out_id: str) -> list[dict[str, Any]]:
    return [c for c in sim.ledger()["calls"] if c.get("out_id") == out_id and c.get("action") == "BindAxb"]


def test_a_bind_succeeds_and_its_result_is_kept_by_key(celery_worker: Any, simulator: Any) -> None:
    """One enqueue, one vendor binding, and the SecretBindDTO is retrievable by key."""
    handle = enqueue_bind(request(1))
    assert handle.key == "order-1" and handle.created
    res = handle.result(timeout=15)
    assert res.ok and res.dto is not None and res.attempts == 1
    (subs_id,) = bindings_for(simulator, "order-1")
    assert res.dto.subs_id == subs_id
    again = get_result("order-1")
    assert again is not None and again.dto == res.dto and again.request_id


def test_a_transient_code_is_retried_then_succeeds(celery_worker: Any, simulator: Any) -> None:
    """Two isp.SYSTEM_ERROR answers, then OK: three calls, one binding, succeeded."""
    simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=2)
    res = enqueue_bind(request(2)).result(timeout=15)
    assert res.ok and res.attempts == 3
    assert len(bindings_for(simulator, "order-2")) == 1
    assert [c["code"] for c in calls_for(simulator, "order-2")] == [
        "isp.SYSTEM_ERROR",
        "isp.SYSTEM_ERROR",
        "OK",
    ]


def test_a_terminal_code_reaches_the_dead_letters_after_exactly_one_call(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """An unknown pool is terminal: one call, then a dead letter that keeps the request."""
    res = enqueue_bind(request(3, PoolKey="FC999999999")).result(timeout=15)
    assert res.status == "dead_lettered" and res.code == "isv.POOLKEY_NOT_EXISTS"
    assert len(calls_for(simulator, "order-3")) == 1
    (entry,) = DeadLetters(pipeline.redis).entries()
    assert entry.key == "order-3" and entry.code == "isv.POOLKEY_NOT_EXISTS" and entry.attempts == 1
    assert entry.request["PhoneNoA"] == "13800000003" and entry.request_id
    assert entry.first_attempt_at and entry.last_attempt_at and entry.task_id


def test_a_deadline_stops_retries(celery_worker: Any, simulator: Any) -> None:
    """With a transient fault forever, retries stop at the producer's deadline and dead-letter."""
    simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=10_000)
    deadline = datetime.now(UTC) + timedelta(seconds=1.5)
    res = enqueue_bind(request(4), deadline=deadline).result(timeout=45)  # a starved machine
    assert res.status == "dead_lettered"
    assert res.code in ("isp.SYSTEM_ERROR", errors.DEADLINE_EXCEEDED)
    calls = calls_for(simulator, "order-4")
    assert calls and all(c["time"] <= deadline.timestamp() + 0.05 for c in calls)
    assert bindings_for(simulator, "order-4") == []


def test_the_same_key_enqueued_three_times_concurrently_makes_one_binding(
    celery_worker: Any, simulator: Any
) -> None:
    """Three concurrent producers, one key: one vendor binding, the same SecretBindDTO for all."""
    barrier = threading.Barrier(3)
    handles: list[Any] = []
    same = request(5)

    def produce() -> None:
        barrier.wait()
        handles.append(enqueue_bind(same))

    threads = [threading.Thread(target=produce) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(h.created for h in handles) == 1
    results = [h.result(timeout=15) for h in handles]
    assert all(r.ok for r in results)
    assert len({r.dto.subs_id for r in results if r.dto}) == 1
    assert len(bindings_for(simulator, "order-5")) == 1
    assert len(calls_for(simulator, "order-5")) == 1


def test_enqueueing_a_finished_key_again_makes_no_new_call(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """After success, the same key returns the stored result without calling the vendor."""
    same = request(6)
    first = enqueue_bind(same).result(timeout=15)
    second_handle = enqueue_bind(same)
    assert not second_handle.created
    assert second_handle.result(timeout=5).dto == first.dto
    # Nothing left to deliver on the queue: no later message for the key can still call.
    wait_until(lambda: queue_settled(pipeline))
    assert len(calls_for(simulator, "order-6")) == 1


def test_a_key_reused_for_a_different_request_is_refused(pipeline: Runtime) -> None:
    """Same OutId, different phones: IdempotencyConflictError, and nothing is queued."""
    enqueue_bind(request(7))
    with pytest.raises(IdempotencyConflictError, match="order-7"):
        enqueue_bind(request(8, OutId="order-7"))


def test_a_bad_request_is_refused_at_once_naming_field_and_code(pipeline: Runtime) -> None:
    """Validation happens before anything is stored; the number is not echoed."""
    with pytest.raises(InvalidRequestError) as info:
        enqueue_bind(request(9, PhoneNoA="1380000000"))
    text = str(info.value)
    assert "PhoneNoA" in text and "isv.MOBILE_NUMBER_ILLEGAL" in text and "1380000000" not in text
    assert get_result("order-9") is None


class DropFirstRequest(httpx.BaseTransport):
    """Loses the first request on the way (the vendor never sees it) and reports a read timeout."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.dropped == 0:
            self.dropped += 1
            raise httpx.ReadTimeout("simulated loss", request=request)
        return self.inner.handle_request(request)


def test_a_lost_request_is_resent_with_its_nonce_and_binds_once(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """A read timeout on a request that never arrived: the replay (same nonce) binds, once."""
    from worker.vendor import DyplsClient

    transport = DropFirstRequest()
    pipeline.client = DyplsClient(pipeline.settings, transport=transport)
    res = enqueue_bind(request(10)).result(timeout=15)
    assert res.ok and res.attempts == 2 and transport.dropped == 1
    assert len(bindings_for(simulator, "order-10")) == 1
    nonces = [c["nonce"] for c in calls_for(simulator, "order-10")]
    assert len(nonces) == 1


def test_an_answer_lost_after_the_bind_was_made_is_not_bound_again(
    celery_worker: Any, simulator: Any, pipeline: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vendor binds but answers too late: the replay gets SignatureNonceUsed → AMBIGUOUS dead letter."""
    from worker.vendor import DyplsClient

    monkeypatch.setattr(pipeline.settings, "read_timeout_s", 0.3)
    pipeline.client = DyplsClient(pipeline.settings)
    simulator.set_faults(slow_response_ms=1500, slow_rate=1.0)
    handle = enqueue_bind(request(11))
    wait_until(lambda: bindings_for(simulator, "order-11"))  # bound; its answer is on the slow path
    simulator.set_faults(slow_response_ms=0, slow_rate=0.0)
    res = handle.result(timeout=15)
    assert res.status == "dead_lettered" and res.code == errors.AMBIGUOUS_OUTCOME
    assert len(bindings_for(simulator, "order-11")) == 1
    codes = [c["code"] for c in calls_for(simulator, "order-11")]
    assert codes.count("OK") == 1 and "SignatureNonceUsed" in codes


def test_wrong_credentials_stop_the_cluster_calling_instead_of_storming(
    celery_worker: Any, simulator: Any, pipeline: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An account-level refusal holds every other bind (with a clear reason) until a probe succeeds."""
    from tests.pipeline_fixture import apply_env
    from tests.simulator_fixture import fixture_config
    from worker.producer import enqueue_binds

    apply_env(monkeypatch, {"AXB_ACCESS_KEY_SECRET": "a-wrong-secret", "AXB_ACCOUNT_HOLD_S": "1.5"})
    handles = enqueue_binds([request(700 + i) for i in range(20)]).handles

    def every_bind_refused_or_held() -> bool:
        seen = [h.status() for h in handles]
        return all(r is not None and (r.done or "held" in (r.message or "")) for r in seen)

    wait_until(every_bind_refused_or_held, timeout=10)
    refused = [c for c in simulator.ledger()["calls"] if c["code"] == "SignatureDoesNotMatch"]
    assert 1 <= len(refused) <= 8  # at most the calls already in flight, not one per bind
    held = [h.status() for h in handles]
    assert sum(1 for r in held if r and r.status == "dead_lettered") == len(refused)
    waiting = [r for r in held if r and not r.done]
    assert waiting and all("held" in r.message and r.code == "SignatureDoesNotMatch" for r in waiting)

    simulator.reset(fixture_config(access_key_secret="a-wrong-secret"))  # the account is fixed
    results = [h.result(timeout=20) for h in handles]
    assert sum(r.ok for r in results) == 20 - len(refused)
    assert len(simulator.ledger()["calls"]) == 20 - len(refused)  # no call was wasted after the fix


def test_malformed_messages_put_straight_on_the_queue_are_dead_lettered(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """Messages we did not write (no key, wrong types, extra args) go to the dead letters; work goes on."""
    from worker.celery_app import app

    q = pipeline.settings.queue
    app.send_task("axb.bind", args=[], queue=q)
    app.send_task("axb.bind", args=[12345], queue=q)
    app.send_task("axb.bind", args=["k", "extra"], kwargs={"PhoneNoA": "13800000123"}, queue=q)
    app.send_task("axb.bind", args=["no-such-key"], queue=q)
    res = enqueue_bind(request(80)).result(timeout=15)
    assert res.ok
    dead = DeadLetters(pipeline.redis)
    wait_until(lambda: len(dead.entries()) >= 3, timeout=10)
    entries = dead.entries()
    assert [e.code for e in entries] == [errors.MALFORMED_MESSAGE] * 3
    assert all("13800000123" not in e.raw for e in entries)


def test_a_message_lost_by_the_broker_or_never_published_is_sent_again_by_the_watchdog(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message popped by a worker killed before kombu recorded it, and a producer that died
    between recording and publishing: the watchdog publishes both again; each binds once."""
    from celery.contrib.testing.worker import start_worker

    from tests.pipeline_fixture import apply_env
    from worker.celery_app import app
    from worker.producer import prepare_bind
    from worker.queue import start_pump, stop_pump
    from worker.runtime import get_runtime

    apply_env(monkeypatch, {"AXB_WATCHDOG_S": "1"})
    rt = get_runtime()
    lost = enqueue_bind(request(90))
    assert rt.redis.delete(rt.settings.queue) == 1  # its message is gone, as in kombu's pop→unacked gap
    # A producer that wrote the record and died before publishing.
    prep = prepare_bind(request(91), None, None, rt)
    assert rt.store.create_many([prep.row])[0].created
    assert rt.redis.llen(rt.settings.queue) == 0

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        queues=[rt.settings.queue],
    ):
        start_pump()
        try:
            assert lost.result(timeout=20).ok
            res = wait_until(lambda: finished_result("order-91"))
            assert res.ok
        finally:
            stop_pump()
    assert len(bindings_for(simulator, "order-90")) == 1
    assert len(bindings_for(simulator, "order-91")) == 1
    assert rt.redis.zcard(keys.watch(rt.settings.queue)) == 0  # finished keys are unwatched
