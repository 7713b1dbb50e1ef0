"""Personal data is bounded in time: Expiration bound, TTLs, signed requests, dead-letter retention."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from prometheus_client import REGISTRY

from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env, wait_until
from worker import errors, keys
from worker.cli import main
from worker.deadletters import DeadLetters, Retention, Selection
from worker.errors import InvalidRequestError
from worker.producer import enqueue_bind, get_result
from worker.runtime import Runtime
from worker.store import BindStore

DAY_MS = 86_400_000


def expiration(minutes: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(hours=8, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def request(i: int, **over: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"1380011{i:04d}",
        "PhoneNoB": f"1390011{i:04d}",
        "Expiration": expiration(),
        "OutId": f"ret-{i}",
    }
    req.update(over)
    return req


def raw_record(client: redis.Redis, key: str) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in client.hgetall(keys.bind_record(key)).items()
    }


def expired_total() -> float:
    """axb_dead_letters_expired_total as this process's Prometheus registry exposes it."""
    return REGISTRY.get_sample_value("axb_dead_letters_expired_total") or 0.0


# --- the Expiration bound ------------------------------------------------------------------------


def test_an_expiration_thousands_of_years_ahead_is_refused_before_any_call(pipeline: Runtime) -> None:
    """'9999-12-31 23:59:59' names Expiration and isv.EXPIRE_DATE_ILLEGAL, and nothing is stored."""
    with pytest.raises(InvalidRequestError) as info:
        enqueue_bind(request(1, Expiration="9999-12-31 23:59:59"))
    assert info.value.field == "Expiration" and info.value.code == "isv.EXPIRE_DATE_ILLEGAL"
    assert "366 days" in str(info.value)
    assert get_result("ret-1") is None


def test_the_cli_refuses_a_far_expiration_in_one_line_with_exit_code_2(pipeline: Runtime) -> None:
    """`axb enqueue --expiration '9999-12-31 23:59:59'`: exit 2, the field and the code named."""
    result = CliRunner().invoke(
        main,
        [
            "enqueue",
            "--pool-key",
            "FC100000001",
            "--phone-no-a",
            "13800110002",
            "--phone-no-b",
            "13900110002",
            "--expiration",
            "9999-12-31 23:59:59",
        ],
    )
    assert result.exit_code == 2
    assert "isv.EXPIRE_DATE_ILLEGAL" in result.output and "Traceback" not in result.output


def test_an_expiration_within_the_bound_is_accepted_and_bounds_the_record_ttl(
    pipeline: Runtime, redis_client: redis.Redis
) -> None:
    """365 days ahead is accepted; the record's TTL is at most 366 days plus the extra day."""
    enqueue_bind(request(3, Expiration=expiration(minutes=365 * 24 * 60)))
    ttl_s = redis_client.ttl(keys.bind_record("ret-3"))
    assert 365 * 86_400 < ttl_s <= 367 * 86_400


def test_an_extend_beyond_the_bound_is_refused(pipeline: Runtime) -> None:
    """The same bound holds for UpdateSubscription's new Expiration."""
    from worker.producer import enqueue_extend

    enqueue_bind(request(4))
    with pytest.raises(InvalidRequestError) as info:
        enqueue_extend("ret-4", "9999-12-31 23:59:59")
    assert info.value.code == "isv.EXPIRE_DATE_ILLEGAL"


# --- TTLs of histories, signed requests ------------------------------------------------------------


def test_a_bind_dead_lettered_on_its_first_call_leaves_a_history_that_expires(
    celery_worker: Any, pipeline: Runtime
) -> None:
    """The history list created by the dead letter itself gets the record's TTL."""
    res = enqueue_bind(request(10, PoolKey="FC999999999")).result(timeout=15)
    assert res.status == "dead_lettered"
    hist_ttl = pipeline.redis.ttl(keys.bind_history("ret-10"))
    rec_ttl = pipeline.redis.ttl(keys.bind_record("ret-10"))
    assert pipeline.redis.llen(keys.bind_history("ret-10")) == 1
    assert 0 < hist_ttl <= rec_ttl <= 2 * 86_400


def test_the_signed_request_is_gone_after_a_success_and_after_a_definite_refusal(
    celery_worker: Any, pipeline: Runtime
) -> None:
    """No `inflight` field stays on a succeeded or a terminally refused record."""
    ok = enqueue_bind(request(11)).result(timeout=15)
    refused = enqueue_bind(request(12, PoolKey="FC999999999")).result(timeout=15)
    assert ok.ok and refused.code == "isv.POOLKEY_NOT_EXISTS"
    for key in ("ret-11", "ret-12"):
        rec = raw_record(pipeline.redis, key)
        assert rec["status"] in ("succeeded", "dead_lettered")
        assert "inflight" not in rec and "inflight_at" not in rec


def test_the_signed_request_stays_while_an_answer_is_lost_and_goes_once_it_is_settled(
    celery_worker: Any, simulator: Any, pipeline: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers lost (read timeouts): the signed request is kept for the nonce proof; once the
    proof settles it (SignatureNonceUsed → ambiguous dead letter) it is deleted."""
    from worker.vendor import DyplsClient

    monkeypatch.setattr(pipeline.settings, "read_timeout_s", 0.3)
    pipeline.client = DyplsClient(pipeline.settings)
    simulator.set_faults(slow_response_ms=1500, slow_rate=1.0)
    handle = enqueue_bind(request(13))
    kept = wait_until(
        lambda: (rec := pipeline.store.get("ret-13")) is not None and rec.inflight is not None and rec,
        timeout=10,
    )
    assert kept.status in ("pending", "retrying") and "PhoneNoA" in kept.inflight["url"]
    simulator.set_faults(slow_response_ms=0, slow_rate=0.0)
    res = handle.result(timeout=30)
    if res.status == "succeeded":
        # On a starved machine the first copy may never have reached the simulator (the client
        # gave up first): re-sending it byte for byte then bound it, once.
        assert len(simulator.bindings_for("ret-13")) == 1
    else:
        assert res.status == "dead_lettered" and res.code == errors.AMBIGUOUS_OUTCOME
    assert "inflight" not in raw_record(pipeline.redis, "ret-13")  # settled either way: gone


# --- purge and retention ---------------------------------------------------------------------------


def _dead_letter_directly(store: BindStore, key: str, i: int) -> str:
    """A record created and dead-lettered through the store's scripts (no vendor call)."""
    import json

    req = request(i)
    store.create_many(
        [
            {
                "key": key,
                "task_id": keys.task_id_for(key),
                "request": json.dumps(req),
                "fingerprint": f"fp-{i}",
                "pool": "FC100000001",
                "deadline": 0,
                "expires_at": 0,
                "ttl_s": 3600,
            }
        ]
    )
    entry = store.dead_letter(
        key, code="isv.POOLKEY_NOT_EXISTS", message="no pool", hist={"attempt": 1, "code": "x"}
    )
    assert entry is not None
    return entry


def test_purge_removes_the_histories_and_the_requests_of_what_it_purges(
    settings: Any, redis_client: redis.Redis
) -> None:
    """`dlq purge`: the entry, its history and its record's request go; the status stays."""
    store = BindStore(redis_client)
    _dead_letter_directly(store, "ret-20", 20)
    _dead_letter_directly(store, "ret-21", 21)
    dead = DeadLetters(redis_client)
    purged = dead.purge(dead.select(Selection(all=True)), selection="all", user="t", host="h")
    assert purged == 2 and dead.depth() == 0
    for key in ("ret-20", "ret-21"):
        assert not redis_client.exists(keys.bind_history(key))
        rec = raw_record(redis_client, key)
        assert rec["status"] == "dead_lettered" and "request" not in rec and rec["redacted_at"]
    (audit,) = dead.audit()
    assert audit["op"] == "purge" and audit["count"] == "2"


def test_a_replayed_record_keeps_its_history_when_its_old_entry_is_removed(
    settings: Any, redis_client: redis.Redis
) -> None:
    """The history belongs to the live record once it was replayed: removing the old entry keeps it."""
    store = BindStore(redis_client)
    entry_id = _dead_letter_directly(store, "ret-22", 22)
    dead = DeadLetters(redis_client)
    (dl,) = dead.select(Selection(ids=(entry_id,)))
    redis_client.hset(keys.bind_record("ret-22"), mapping={"status": "pending", "dlq_id": ""})
    assert dead.drop([dl]) == 1
    assert redis_client.llen(keys.bind_history("ret-22")) == 1
    assert "request" in raw_record(redis_client, "ret-22")


def test_retention_removes_old_dead_letters_with_an_audit_record_and_a_metric(
    settings: Any, redis_client: redis.Redis
) -> None:
    """Past AXB_DLQ_RETENTION_DAYS an entry goes, counted and audited; younger ones stay."""
    store = BindStore(redis_client)
    old = _dead_letter_directly(store, "ret-30", 30)
    young = _dead_letter_directly(store, "ret-31", 31)
    dead = DeadLetters(redis_client)
    # Make the first one 31 days old: its dead_lettered_at is what retention reads (an entry
    # re-sealed by `axb rekey` also has a new id and its old dead_lettered_at).
    ((_, fields),) = redis_client.xrange(keys.DEAD_LETTERS, old, old)
    month_ago = int(time.time() * 1000) - 31 * DAY_MS
    redis_client.xdel(keys.DEAD_LETTERS, old)
    old = redis_client.xadd(keys.DEAD_LETTERS, {**fields, "dead_lettered_at": str(month_ago)})
    before = expired_total()
    removed = Retention(redis_client, 30).sweep()
    assert removed == 1
    assert [d.id for d in dead.entries()] == [young]
    assert expired_total() == before + 1
    audit = dead.audit()[0]
    assert audit["op"] == "retention" and audit["count"] == "1" and old in audit["ids"]
    assert "13800110030" not in str(audit)


def test_one_pump_of_the_cluster_sweeps_per_period(settings: Any, redis_client: redis.Redis) -> None:
    """The lock: a second sweep within the period does nothing; forced, it finds what is old."""
    store = BindStore(redis_client)
    _dead_letter_directly(store, "ret-40", 40)
    future = int(time.time() * 1000) + 31 * DAY_MS
    first, second = Retention(redis_client, 30), Retention(redis_client, 30)
    assert first.sweep(now_ms=int(time.time() * 1000)) == 0  # nothing old: lock taken anyway
    assert second.sweep(now_ms=future) == 0  # locked by the first for the period
    assert second.sweep(now_ms=future, force=True) == 1


def test_dlq_stats_shows_when_the_oldest_entry_goes(pipeline: Runtime, redis_client: redis.Redis) -> None:
    """`axb dlq stats --json`: oldest_goes_at = the oldest dead_lettered_at + the retention."""
    store = BindStore(redis_client)
    _dead_letter_directly(store, "ret-50", 50)
    (dl,) = DeadLetters(redis_client).entries()
    result = CliRunner().invoke(main, ["dlq", "stats", "--json"])
    assert result.exit_code == 0, result.output
    import json

    stats = json.loads(result.output)
    assert stats["retention_days"] == 30 and stats["oldest_goes_at"] == dl.dead_lettered_at + 30 * DAY_MS
    table = CliRunner().invoke(main, ["dlq", "stats"])
    assert "removed by retention (30 d) at" in table.output


def test_a_real_worker_removes_dead_letters_past_retention_from_its_pump(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`axb worker` with a retention of ~1 s: the pump's sweep removes the entry and audits it."""
    apply_env(
        monkeypatch,
        {"AXB_DLQ_RETENTION_DAYS": str(1.0 / 86_400), "AXB_DLQ_RETENTION_SWEEP_S": "0.5"},
    )
    worker = WorkerProcess(axb_env(), "-c", "2", log_path=tmp_path / "w.log").start()
    try:
        res = enqueue_bind(request(60, PoolKey="FC999999999")).result(timeout=30)
        assert res.status == "dead_lettered"
        dead = DeadLetters(pipeline.redis)
        wait_until(lambda: dead.depth() == 0, timeout=20)
    finally:
        worker.stop()
    (audit,) = [a for a in dead.audit() if a["op"] == "retention"]
    assert audit["count"] == "1"
    assert not pipeline.redis.exists(keys.bind_history("ret-60"))
    assert "request" not in raw_record(pipeline.redis, "ret-60")
