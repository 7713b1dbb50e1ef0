"""`axb forget --phone NUMBER`: a data subject's number leaves every record, history and dead letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env, wait_until
from tests.test_at_rest import dump, spellings_found
from tests.test_sealing import new_key
from worker import keys
from worker.cli import main
from worker.deadletters import DeadLetters
from worker.privacy import FORGOTTEN, forget, normalised
from worker.producer import enqueue_bind, get_result
from worker.runtime import Runtime, get_runtime
from worker.sealing import DataKeys
from worker.store import BindStore

SUBJECT = "13800140001"


def expiration(minutes: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(hours=8, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def request(key: str, a: str, b: str, **over: Any) -> dict[str, Any]:
    return {
        "PoolKey": "FC100000001",
        "PhoneNoA": a,
        "PhoneNoB": b,
        "Expiration": expiration(),
        "OutId": key,
        **over,
    }


def raw_record(client: redis.Redis, key: str) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in client.hgetall(keys.bind_record(key)).items()
    }


def test_any_spelling_of_a_number_is_normalised_and_a_non_number_refused() -> None:
    """Spaces, dashes, +86/0086 and full-width digits all name the same number."""
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in SUBJECT)
    for spelling in (SUBJECT, "+86 138 0014 0001", "0086-138-0014-0001", "138-0014-0001", full_width):
        assert normalised(spelling) == SUBJECT
    result = CliRunner().invoke(main, ["forget", "--phone", "12345", "--yes"])
    assert result.exit_code == 2 and "isv.MOBILE_NUMBER_ILLEGAL" in result.output


@pytest.mark.parametrize("sealed", [False, True], ids=["plaintext", "sealed"])
def test_forget_erases_a_number_from_records_histories_and_dead_letters(
    sealed: bool, pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bound trip, a dead letter and a held bind hold the number; another trip does not. After
    `axb forget`: the number is nowhere in Redis, the bound trip still reads back, the held bind
    is cancelled and never sent, the other trip is untouched, and the audit record has no number."""
    if sealed:
        apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    rt = get_runtime()
    worker = WorkerProcess(axb_env(), "-c", "4", log_path=tmp_path / "w.log").start()
    try:
        _bind_dead_letter_and_hold(rt)
        result = CliRunner().invoke(main, ["forget", "--phone", "+86 138-0014-0001", "--yes", "--json"])
        # The hold ends; a later bind goes through the same worker, and e-4 never does.
        rt.redis.delete(keys.account_hold(rt.settings.access_key_id))
        assert enqueue_bind(request("e-5", "13800140005", "13900140005")).result(timeout=30).ok
    finally:
        worker.stop()
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts == {
        "phone": "138****0001",
        "erased": 4,
        "records": 3,
        "cancelled": 1,
        "dead_letters": 1,
        "in_flight": [],
    }
    assert spellings_found(dump(rt.redis), [SUBJECT]) == []

    bound = get_result("e-1")
    assert bound is not None and bound.ok and bound.dto is not None  # still unbindable by key
    for key in ("e-1", "e-2", "e-4"):
        rec = raw_record(rt.redis, key)
        assert "request" not in rec and rec["forgotten_at"]
        assert not rt.redis.exists(keys.bind_history(key))
    assert raw_record(rt.redis, "e-2")["status"] == "dead_lettered"
    held = raw_record(rt.redis, "e-4")
    assert held["status"] == "cancelled" and held["code"] == FORGOTTEN
    assert rt.redis.zscore(keys.delayed(rt.settings.queue), "e-4") is None
    other = rt.store.get("e-3")
    assert other is not None and other.request["PhoneNoA"] == "13800140003"
    assert rt.redis.llen(keys.bind_history("e-3")) == 1
    assert DeadLetters(rt.redis).depth() == 0
    assert not [c for c in simulator.ledger()["calls"] if c.get("out_id") == "e-4"]

    (audit,) = [a for a in DeadLetters(rt.redis).audit() if a["op"] == "forget"]
    assert audit["subject"] == "138****0001" and audit["count"] == "4"
    assert bool(audit["subject_hmac"]) is sealed
    assert SUBJECT not in json.dumps(audit)

    again = CliRunner().invoke(main, ["forget", "--phone", SUBJECT, "--yes", "--json"])
    assert json.loads(again.output)["erased"] == 0


def _bind_dead_letter_and_hold(rt: Runtime) -> None:
    """e-1 bound with the number, e-2 dead-lettered with it, e-3 bound without it, e-4 held with it."""
    assert enqueue_bind(request("e-1", SUBJECT, "13900140001")).result(timeout=30).ok
    refused = enqueue_bind(request("e-2", "13800140002", SUBJECT, PoolKey="FC999999999")).result(timeout=30)
    assert refused.status == "dead_lettered"
    assert enqueue_bind(request("e-3", "13800140003", "13900140003")).result(timeout=30).ok
    # Calls on hold for the account: e-4 waits on the delay queue, never sent.
    rt.holds.hold_account(rt.settings.access_key_id, "isv.ACCOUNT_ABNORMAL", "test hold", 30)
    enqueue_bind(request("e-4", "13800140004", SUBJECT))
    wait_until(
        lambda: (r := rt.store.get("e-4")) is not None and r.code == "isv.ACCOUNT_ABNORMAL", timeout=20
    )


def test_a_bind_with_a_request_at_the_vendor_is_left_alone_and_reported(
    settings: Any, redis_client: redis.Redis
) -> None:
    """Its outcome is open: the record keeps its request; the key is reported to forget again later."""
    store = BindStore(redis_client)
    req = request("e-9", SUBJECT, "13900140009")
    store.create_many(
        [
            {
                "key": "e-9",
                "task_id": keys.task_id_for("e-9"),
                "request": json.dumps(req),
                "fingerprint": "fp",
                "pool": "FC100000001",
                "deadline": 0,
                "expires_at": 0,
                "ttl_s": 3600,
            }
        ]
    )
    assert store.begin_attempt("e-9", {"url": f"http://x/?PhoneNoA={SUBJECT}", "signed_at": 0}) == 1
    report = forget(redis_client, SUBJECT, DataKeys())
    assert report.in_flight == ["e-9"] and report.records == 0
    rec = store.get("e-9")
    assert rec is not None and rec.status == "pending" and rec.inflight is not None
