"""The trip lifecycle: bind → unbind frees X, extend moves the expiry; unbinds never race binds."""

from __future__ import annotations

import contextlib
import csv
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.pipeline_fixture import queue_settled, wait_until
from tests.simulator_fixture import fixture_config
from tests.test_pipeline import expiration, request
from tests.test_store import store_row
from worker import errors, keys
from worker.backfill import run_backfill
from worker.cli import main
from worker.deadletters import DeadLetters
from worker.errors import InvalidRequestError
from worker.producer import enqueue_bind, enqueue_extend, enqueue_unbind, get_op_result, get_result
from worker.runtime import Runtime

A, B = "13812345678", "13987654321"


def vendor_calls(sim: Any, action: str) -> list[dict[str, Any]]:
    return [c for c in sim.ledger()["calls"] if c["action"] == action]


def live_for(sim: Any, out_id: str) -> list[dict[str, Any]]:
    return [b for b in sim.bindings(live_only=True) if b["out_id"] == out_id]


@contextlib.contextmanager
def start_worker(rt: Runtime) -> Iterator[Any]:
    """A worker (with the delay-queue pump) started only now: what was queued before waits for it."""
    from celery.contrib.testing.worker import start_worker as celery_start_worker

    from worker.celery_app import app
    from worker.queue import start_pump, stop_pump

    with celery_start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        queues=[rt.settings.queue],
    ) as w:
        start_pump()
        try:
            yield w
        finally:
            stop_pump()


# --- unbind ---------------------------------------------------------------------------------------


def test_unbinding_frees_the_x_number_so_a_bind_in_an_exhausted_pool_succeeds(
    celery_worker: Any, simulator: Any
) -> None:
    """A pool of one X number: a second bind finds none; after the unbind a third one gets it."""
    simulator.reset(fixture_config(pool_size=1, max_pairs_per_x=1))
    first = enqueue_bind(request(1)).result(timeout=15)
    assert first.ok and first.state == "bound" and first.dto is not None

    soon = datetime.now(UTC) + timedelta(seconds=1)
    refused = enqueue_bind(request(2), deadline=soon).result(timeout=15)
    assert refused.status == "dead_lettered"
    assert refused.code in ("isv.NO_AVAILABLE_NUMBER", errors.DEADLINE_EXCEEDED)
    answers = {c["code"] for c in simulator.calls(action="BindAxb", out_id="order-2")}
    assert answers == {"isv.NO_AVAILABLE_NUMBER"}

    res = enqueue_unbind("order-1").result(timeout=15)
    assert res.ok and res.outcome == "unbound" and res.state == "unbound"
    assert res.subs_id == first.dto.subs_id
    assert get_result("order-1") is not None and get_result("order-1").state == "unbound"  # type: ignore[union-attr]
    assert simulator.sim.binding(first.dto.subs_id)["status"] == "unbound"

    third = enqueue_bind(request(3)).result(timeout=15)
    assert third.ok and third.dto is not None and third.dto.secret_no == first.dto.secret_no
    assert simulator.ledger()["live_bindings"] == 1


def test_an_unbind_waits_out_a_hold_on_the_account(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """After an account-level refusal the cluster holds its calls: an unbind waits, with the
    reason in its record and no vendor call, and unbinds once the hold is over."""
    bound = enqueue_bind(request(5)).result(timeout=15)
    assert bound.ok
    pipeline.holds.hold_account(pipeline.settings.access_key_id, "isv.ACCOUNT_ABNORMAL", "closed", 1.5)
    handle = enqueue_unbind("order-5")
    held = wait_until(
        lambda: (r := pipeline.store.get(handle.key)) is not None and r.code == "isv.ACCOUNT_ABNORMAL" and r,
        timeout=10,
    )
    assert held.status == "pending" and held.message.startswith("held: ") and held.attempts == 0
    assert not vendor_calls(simulator, "UnbindSubscription")
    res = handle.result(timeout=15)
    assert res.ok and res.outcome == "unbound"
    assert len(vendor_calls(simulator, "UnbindSubscription")) == 1


def test_a_double_unbind_is_a_no_op(celery_worker: Any, simulator: Any) -> None:
    """The same key twice: one operation, one vendor call; by SubsId afterwards: already gone, OK."""
    bound = enqueue_bind(request(4)).result(timeout=15)
    assert bound.ok and bound.dto is not None
    first = enqueue_unbind("order-4")
    second = enqueue_unbind("order-4")
    assert first.created and not second.created and first.key == second.key == "unbind:order-4"
    assert first.result(timeout=15).ok and second.result(timeout=15).outcome == "unbound"
    assert len(vendor_calls(simulator, "UnbindSubscription")) == 1

    again = enqueue_unbind(
        subs_id=bound.dto.subs_id, pool_key="FC100000001", secret_no=bound.dto.secret_no
    ).result(timeout=15)
    assert again.ok and again.outcome == "already_gone"
    codes = [c["code"] for c in vendor_calls(simulator, "UnbindSubscription")]
    assert codes == ["OK", "isv.SUBS_NOT_EXIST"]


def test_an_unbind_queued_before_its_bind_ran_cancels_it_without_a_vendor_call(
    pipeline: Runtime, simulator: Any
) -> None:
    """Bind and unbind both queued before any worker runs: the bind ends cancelled, never sent."""
    bind = enqueue_bind(request(5))
    unbind = enqueue_unbind("order-5")
    with start_worker(pipeline):
        res = unbind.result(timeout=15)
        bound = bind.result(timeout=15)
    assert res.ok and res.outcome == "cancelled"
    assert bound.status == "cancelled" and bound.code == errors.CANCELLED and bound.state == "cancelled"
    assert simulator.ledger()["calls"] == []  # neither BindAxb nor UnbindSubscription
    assert simulator.ledger()["live_bindings"] == 0


def test_a_cancelled_bind_is_never_bound_later(pipeline: Runtime, simulator: Any) -> None:
    """Enqueueing the cancelled key again returns the cancelled bind; nothing is sent."""
    same = request(6)
    enqueue_bind(same)
    enqueue_unbind("order-6")
    with start_worker(pipeline):
        assert enqueue_unbind("order-6").result(timeout=15).outcome == "cancelled"
        again = enqueue_bind(same)
        assert not again.created and again.result(timeout=5).status == "cancelled"
        # Nothing left to deliver on the queue: no later message for the key can still call.
        wait_until(lambda: queue_settled(pipeline))
    assert vendor_calls(simulator, "BindAxb") == []


def test_an_unbind_cancels_a_bind_retrying_after_definite_refusals(
    celery_worker: Any, simulator: Any, pipeline: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """isp.SYSTEM_ERROR answers bound nothing: the retrying bind is cancelled, not sent again."""
    monkeypatch.setattr(pipeline.settings, "backoff_initial_s", 2.0)
    monkeypatch.setattr(pipeline.settings, "backoff_max_s", 2.0)
    simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=1000)
    bind = enqueue_bind(request(7))
    wait_until(lambda: (r := bind.status()) is not None and r.status == "retrying", timeout=10)
    res = enqueue_unbind("order-7").result(timeout=15)
    assert res.ok and res.outcome == "cancelled"
    bound = bind.result(timeout=5)
    assert bound.status == "cancelled" and bound.attempts >= 1
    calls = len(vendor_calls(simulator, "BindAxb"))
    # The retry the bind had scheduled is gone with it, and nothing else is left to deliver.
    wait_until(lambda: queue_settled(pipeline))
    assert len(vendor_calls(simulator, "BindAxb")) == calls
    assert simulator.ledger()["live_bindings"] == 0


def test_an_unbind_waits_for_a_bind_in_flight_then_unbinds_it(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """The bind's request is at the vendor when the unbind arrives: it waits, then unbinds."""
    simulator.set_faults(latency_ms=600)
    bind = enqueue_bind(request(8))
    wait_until(lambda: pipeline.store.get("order-8").inflight is not None, timeout=10)  # type: ignore[union-attr]
    unbind = enqueue_unbind("order-8")
    res = unbind.result(timeout=15)
    bound = bind.result(timeout=5)
    assert bound.ok and bound.state == "unbound"
    assert res.ok and res.outcome == "unbound" and bound.dto is not None and res.subs_id == bound.dto.subs_id
    assert [c["code"] for c in vendor_calls(simulator, "BindAxb")] == ["OK"]
    assert live_for(simulator, "order-8") == []
    assert simulator.ledger()["live_bindings"] == 0


class LoseFirstAnswer(httpx.BaseTransport):
    """The first BindAxb reaches the vendor but its answer is lost (a read timeout)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.lost == 0 and "BindAxb" in (request.headers.get("x-acs-action", "") + str(request.url)):
            self.lost += 1
            response.read()
            raise httpx.ReadTimeout("simulated lost answer", request=request)
        return response


def test_an_unbind_of_a_bind_whose_outcome_is_unknown_dead_letters_for_reconciling(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """A bind that may exist (axb.AMBIGUOUS_OUTCOME) cannot be unbound blindly: a clear dead letter."""
    from worker.vendor import DyplsClient

    transport = LoseFirstAnswer()
    pipeline.client = DyplsClient(pipeline.settings, transport=transport)
    bind = enqueue_bind(request(9))
    wait_until(lambda: (r := bind.status()) is not None and r.attempts >= 1, timeout=10)
    unbind = enqueue_unbind("order-9")
    bound = bind.result(timeout=15)
    res = unbind.result(timeout=15)
    assert bound.status == "dead_lettered" and bound.code == errors.AMBIGUOUS_OUTCOME
    assert res.status == "dead_lettered" and res.code == errors.AMBIGUOUS_OUTCOME
    assert "reconcile" in res.message
    entries = {e.key: e for e in DeadLetters(pipeline.redis).entries()}
    assert entries["unbind:order-9"].action == "unbind" and entries["unbind:order-9"].code == res.code


def test_an_unbind_of_a_dead_lettered_bind_is_a_no_op(celery_worker: Any, simulator: Any) -> None:
    """Nothing was bound (a definite refusal): the unbind succeeds without calling the vendor."""
    assert enqueue_bind(request(10, PoolKey="FC999999999")).result(timeout=15).status == "dead_lettered"
    res = enqueue_unbind("order-10").result(timeout=15)
    assert res.ok and res.outcome == "never_bound"
    assert vendor_calls(simulator, "UnbindSubscription") == []


def test_an_unbind_retries_transient_codes_and_dead_letters_terminal_ones(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """Same retry and dead-letter rules as binds, with the unbind's own code in the stream."""
    assert enqueue_bind(request(11)).result(timeout=15).ok
    simulator.set_faults(fault_actions=["UnbindSubscription"], force_code="isp.SYSTEM_ERROR", force_count=2)
    res = enqueue_unbind("order-11").result(timeout=15)
    assert res.ok and res.attempts == 3
    assert [c["code"] for c in vendor_calls(simulator, "UnbindSubscription")] == [
        "isp.SYSTEM_ERROR",
        "isp.SYSTEM_ERROR",
        "OK",
    ]

    assert enqueue_bind(request(12)).result(timeout=15).ok
    simulator.set_faults(
        fault_actions=["UnbindSubscription"], force_code="isv.FORBIDDEN_ACTION", force_count=1
    )
    bad = enqueue_unbind("order-12").result(timeout=15)
    assert bad.status == "dead_lettered" and bad.code == "isv.FORBIDDEN_ACTION" and bad.attempts == 1
    (entry,) = [e for e in DeadLetters(pipeline.redis).entries() if e.key == "unbind:order-12"]
    assert entry.action == "unbind" and entry.request["IdempotencyKey"] == "order-12"
    assert get_result("order-12").state == "bound"  # type: ignore[union-attr]


def test_unbinding_an_unknown_key_is_refused_at_once(pipeline: Runtime) -> None:
    """No record and no SubsId: InvalidRequestError naming the key; nothing is queued."""
    with pytest.raises(InvalidRequestError, match=errors.UNKNOWN_KEY):
        enqueue_unbind("no-such-trip")
    with pytest.raises(InvalidRequestError, match="SubsId"):
        enqueue_unbind(pool_key="FC100000001", secret_no="17100000000")
    assert pipeline.redis.llen(pipeline.settings.queue) == 0


def test_bind_keys_may_not_look_like_lifecycle_operations(pipeline: Runtime) -> None:
    """``unbind:``/``extend:`` are reserved: a bind with such a key is refused."""
    with pytest.raises(InvalidRequestError, match="IdempotencyKey"):
        enqueue_bind(request(13, OutId="unbind:x"))


# --- extend ---------------------------------------------------------------------------------------


def test_extend_moves_the_vendor_expiry_and_the_stored_ttl(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """UpdateSubscription(updateExpire): the simulator's expiry and the record's Redis TTL follow."""
    bound = enqueue_bind(request(20, Expiration=expiration(60))).result(timeout=15)
    assert bound.ok and bound.dto is not None
    ttl_before = pipeline.redis.ttl(keys.bind_record("order-20"))
    new = expiration(300)
    res = enqueue_extend("order-20", new).result(timeout=15)
    assert res.ok and res.outcome == "extended" and res.expiration == new and res.state == "extended"
    assert simulator.sim.binding(bound.dto.subs_id)["expiration"] == new
    (call,) = vendor_calls(simulator, "UpdateSubscription")
    assert call["params"]["OperateType"] == "updateExpire" and call["params"]["Expiration"] == new

    after = get_result("order-20")
    assert after is not None and after.expiration == new and after.state == "bound"
    ttl_after = pipeline.redis.ttl(keys.bind_record("order-20"))
    extra = pipeline.settings.result_ttl_extra_s
    assert ttl_after - ttl_before == pytest.approx(240 * 60, abs=10)
    new_at_s = datetime.strptime(new, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() - 8 * 3600
    assert ttl_after == pytest.approx(new_at_s - time.time() + extra, abs=10)  # kept until new + extra
    assert pipeline.redis.ttl(keys.bind_history("order-20")) == pytest.approx(ttl_after, abs=10)


def test_extend_waits_for_a_pending_bind(pipeline: Runtime, simulator: Any) -> None:
    """An extend queued with its bind waits until the bind is bound, then moves the expiry."""
    bind = enqueue_bind(request(21))
    new = expiration(200)
    ext = enqueue_extend("order-21", new)
    with start_worker(pipeline):
        res = ext.result(timeout=15)
        bound = bind.result(timeout=5)
    assert bound.ok and bound.dto is not None and res.ok
    assert simulator.sim.binding(bound.dto.subs_id)["expiration"] == new


def test_extending_an_unbound_binding_is_a_clear_terminal_error(celery_worker: Any, simulator: Any) -> None:
    """Unbound first: the extend dead-letters as axb.NOT_BOUND without a vendor call."""
    assert enqueue_bind(request(22)).result(timeout=15).ok
    assert enqueue_unbind("order-22").result(timeout=15).ok
    res = enqueue_extend("order-22", expiration(200)).result(timeout=15)
    assert res.status == "dead_lettered" and res.code == errors.NOT_BOUND and "unbound" in res.message
    assert vendor_calls(simulator, "UpdateSubscription") == []


def test_of_two_extends_the_latest_asked_for_wins(pipeline: Runtime, simulator: Any) -> None:
    """Two extends queued before a worker runs: the older is superseded, the vendor sees the latest."""
    bind = enqueue_bind(request(23))
    older, newer = expiration(120), expiration(240)
    first = enqueue_extend("order-23", older)
    second = enqueue_extend("order-23", newer)
    with start_worker(pipeline):
        a, b = first.result(timeout=15), second.result(timeout=15)
        bound = bind.result(timeout=5)
    assert a.ok and a.outcome == "superseded" and b.ok and b.outcome == "extended"
    assert bound.dto is not None and simulator.sim.binding(bound.dto.subs_id)["expiration"] == newer
    assert [c["params"]["Expiration"] for c in vendor_calls(simulator, "UpdateSubscription")] == [newer]


def test_an_extend_with_a_bad_expiration_is_refused_at_once(pipeline: Runtime) -> None:
    """A past or malformed Expiration: InvalidRequestError with isv.EXPIRE_DATE_ILLEGAL."""
    enqueue_bind(request(24))
    for bad in ("2020-01-01 00:00:00", "tomorrow"):
        with pytest.raises(InvalidRequestError, match=r"isv\.EXPIRE_DATE_ILLEGAL"):
            enqueue_extend("order-24", bad)
    with pytest.raises(InvalidRequestError, match=errors.UNKNOWN_KEY):
        enqueue_extend("no-such-trip", expiration(100))


# --- the command line and the backfill --------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_unbind_and_extend_with_numbers_masked(celery_worker: Any, simulator: Any) -> None:
    """axb extend / axb unbind / axb result --json; no raw phone number (A, B or X) is printed."""
    bind = run(
        "enqueue",
        *("--pool-key", "FC100000001", "--phone-no-a", A, "--phone-no-b", B),
        *("--expiration", expiration(), "--out-id", "cli-trip", "--wait", "--json"),
    )
    assert bind.exit_code == 0, bind.output
    body = json.loads(bind.stdout)
    assert body["state"] == "bound"
    (binding,) = simulator.bindings()
    x = binding["secret_no"]

    new = expiration(180)
    ext = run("extend", "cli-trip", "--expiration", new, "--wait", "--json")
    assert ext.exit_code == 0, ext.output
    ext_body = json.loads(ext.stdout)
    assert ext_body["status"] == "succeeded" and ext_body["outcome"] == "extended"
    assert ext_body["Expiration"] == new and ext_body["SecretNo"] == x[:3] + "****" + x[-4:]
    assert simulator.sim.binding(binding["subs_id"])["expiration"] == new

    unb = run("unbind", "cli-trip", "--wait", "--json")
    assert unb.exit_code == 0, unb.output
    assert json.loads(unb.stdout)["state"] == "unbound"
    shown = run("result", "cli-trip", "--json")
    assert json.loads(shown.stdout)["state"] == "unbound"
    table = run("unbind", "cli-trip", "--wait")
    assert table.exit_code == 0 and "unbound" in table.output

    for out in (bind, ext, unb, shown, table):
        for number in (A, B, x):
            assert number not in out.output
    assert simulator.ledger()["live_bindings"] == 0

    plain = run("unbind", "cli-trip", "--wait", "--json", "--show-numbers")
    assert json.loads(plain.stdout)["SecretNo"] == x


def test_cli_refuses_an_unknown_key_and_a_missing_expiration(pipeline: Runtime) -> None:
    """Exit 2 with the code named; extend without a new expiry is a usage error."""
    out = run("unbind", "nope", "--json")
    assert out.exit_code == 2 and errors.UNKNOWN_KEY in out.output
    assert run("extend", "nope").exit_code == 2


def test_backfill_action_rows_bind_extend_and_unbind(
    celery_worker: Any, pipeline: Runtime, simulator: Any, tmp_path: Path
) -> None:
    """A file that binds, extends and unbinds trips; invalid Action rows go to the rejects file."""
    fields = ["Action", "PoolKey", "PhoneNoA", "PhoneNoB", "Expiration", "OutId", "IdempotencyKey", "SubsId"]
    rows = [
        {
            "Action": "",
            "PoolKey": "FC100000001",
            "PhoneNoA": "13800020001",
            "PhoneNoB": "13900020001",
            "Expiration": expiration(),
            "OutId": "bf-1",
        },
        {
            "Action": "bind",
            "PoolKey": "FC100000001",
            "PhoneNoA": "13800020002",
            "PhoneNoB": "13900020002",
            "Expiration": expiration(),
            "OutId": "bf-2",
        },
    ]
    path = tmp_path / "trips.csv"

    def write(rows: list[dict[str, str]]) -> Path:
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, restval="")
            w.writeheader()
            w.writerows(rows)
        return path

    first = run_backfill(write(rows), wait=True, wait_timeout_s=30)
    assert first["succeeded"] == 2 and first["by_action"] == {"bind": 2}

    new = expiration(200)
    second_rows = [
        {"Action": "extend", "OutId": "bf-1", "Expiration": new},
        {"Action": "unbind", "IdempotencyKey": "bf-2", "PoolKey": "FC100000001"},
        {"Action": "unbind", "OutId": "no-such-trip"},
        {"Action": "extend", "OutId": "bf-1", "Expiration": "2020-01-01 00:00:00"},
        {"Action": "rebind", "OutId": "bf-1"},
    ]
    second = run_backfill(write(second_rows), wait=True, wait_timeout_s=30, restart=True)
    assert second["rejected"] == 3 and second["by_action"] == {"extend": 1, "unbind": 1}
    assert second["succeeded"] == 2 and second["dead_lettered"] == 0
    with open(second["rejects_file"], newline="", encoding="utf-8") as fh:
        rejects = {(r["field"], r["code"]) for r in csv.DictReader(fh)}
    assert rejects == {
        ("IdempotencyKey", errors.UNKNOWN_KEY),
        ("Expiration", "isv.EXPIRE_DATE_ILLEGAL"),
        ("Action", "isv.INVALID_PARAMETERS"),
    }
    one, two = get_result("bf-1"), get_result("bf-2")
    assert one is not None and one.state == "bound" and one.expiration == new
    assert two is not None and two.state == "unbound"
    assert [b["out_id"] for b in simulator.bindings(live_only=True)] == ["bf-1"]
    op = get_op_result("unbind:bf-2")
    assert op is not None and op.outcome == "unbound"


# --- the race, at the store: one Lua script decides ------------------------------------------------


def _unbind_row(key: str) -> dict[str, Any]:
    from worker.store import now_ms

    return {
        "key": keys.unbind_op(key),
        "task_id": keys.task_id_for(keys.unbind_op(key), "unbind"),
        "request": json.dumps({"IdempotencyKey": key}),
        "fingerprint": keys.unbind_op(key),
        "pool": "FC1",
        "deadline": now_ms() + 120_000,
        "expires_at": now_ms() + 120_000,
        "ttl_s": 3600,
        "action": "unbind",
        "target": key,
    }


def test_an_accepted_unbind_stops_a_bind_that_never_sent_and_spares_one_in_flight(redis_client: Any) -> None:
    """begin_attempt refuses (-2, cancelled) without inflight; with a request in flight it goes on."""
    from worker.store import BindStore

    store = BindStore(redis_client)
    store.create_many([store_row("r1"), store_row("r2")])
    assert store.begin_attempt("r2", {"nonce": "n1"}) == 1  # r2's request is out, fate unknown
    created = store.create_ops([_unbind_row("r1"), _unbind_row("r2")])
    assert all(c.created for c in created)
    assert store.get("r1").cancel_requested == "unbind:r1"  # type: ignore[union-attr]

    assert store.begin_attempt("r1", {"nonce": "n2"}) == -2
    r1 = store.get("r1")
    assert r1 is not None and r1.status == "cancelled" and r1.inflight is None and r1.attempts == 0
    assert redis_client.zscore(keys.watch("axb.bind"), "r1") is None
    assert store.begin_attempt("r1", None) == -1 and store.schedule("r1", due_ms=0) == 0

    assert store.try_cancel("r2", "unbind:r2") == 2  # in flight: the unbind must wait
    assert store.begin_attempt("r2", {"nonce": "n1"}) == 2  # the proof-by-replay still goes out
    assert store.succeed("r2", {"SecretNo": "17100000000", "SubsId": "9"}, "RID", 2_000_000_000, None) == 1
    assert store.try_cancel("r2", "unbind:r2") == 0  # finished: the unbind unbinds what it made


def test_a_binding_made_after_a_cancel_is_still_recorded(redis_client: Any) -> None:
    """Defensive: succeed() on a cancelled record records the binding (never an orphan)."""
    from worker.store import BindStore

    store = BindStore(redis_client)
    store.create_many([store_row("r3")])
    assert store.try_cancel("r3", "unbind:r3") == 1
    assert store.succeed("r3", {"SecretNo": "17100000000", "SubsId": "7"}, "RID", 2_000_000_000, None) == 1
    assert store.get("r3").status == "succeeded"  # type: ignore[union-attr]


def test_a_lost_unbind_message_is_published_again_by_the_watchdog(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every accepted operation is watched: its lost message comes back as an axb.unbind task."""
    from tests.pipeline_fixture import apply_env
    from worker.runtime import get_runtime

    apply_env(monkeypatch, {"AXB_WATCHDOG_S": "1"})
    rt = get_runtime()
    with start_worker(rt):
        assert enqueue_bind(request(30)).result(timeout=15).ok
    handle = enqueue_unbind("order-30")
    assert rt.redis.delete(rt.settings.queue) == 1  # the unbind's message is lost
    with start_worker(rt):
        assert handle.result(timeout=20).outcome == "unbound"
    assert simulator.ledger()["live_bindings"] == 0


def test_a_dead_lettered_unbind_can_be_replayed(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """axb dlq replay re-enqueues an unbind under its own key, as an unbind."""
    assert enqueue_bind(request(31)).result(timeout=15).ok
    simulator.set_faults(
        fault_actions=["UnbindSubscription"], force_code="isv.FORBIDDEN_ACTION", force_count=1
    )
    assert enqueue_unbind("order-31").result(timeout=15).status == "dead_lettered"
    dead = DeadLetters(pipeline.redis)
    report = dead.replay(dead.entries(), pipeline.publish, queue=pipeline.settings.queue)
    assert len(report.replayed) == 1
    res = wait_until(lambda: (r := get_op_result("unbind:order-31")) is not None and r.ok and r, timeout=15)
    assert res.outcome == "unbound" and simulator.ledger()["live_bindings"] == 0


def test_a_dead_lettered_bind_replayed_after_its_unbind_is_cancelled_not_bound(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """The unbind marked the bind: replaying the bind's dead letter ends it cancelled, no call."""
    assert enqueue_bind(request(32, PoolKey="FC999999999")).result(timeout=15).status == "dead_lettered"
    assert enqueue_unbind("order-32").result(timeout=15).outcome == "never_bound"
    dead = DeadLetters(pipeline.redis)
    assert len(dead.replay(dead.entries(), pipeline.publish, queue=pipeline.settings.queue).replayed) == 1
    res = wait_until(lambda: (r := get_result("order-32")) is not None and r.done and r, timeout=15)
    assert res.status == "cancelled"
    assert len(vendor_calls(simulator, "BindAxb")) == 1
