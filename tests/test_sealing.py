"""AXB_DATA_KEY: AES-GCM sealing of phone numbers and signed requests, rotation, wrong keys, rekey."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.pipeline_fixture import ROOT, WorkerProcess, apply_env, axb_env
from worker import keys
from worker.cli import main
from worker.deadletters import DeadLetters
from worker.producer import enqueue_bind, get_result
from worker.runtime import Runtime, get_runtime
from worker.sealing import PREFIX, DataKeyError, DataKeys, data_keys, key_id, sealed_key_id
from worker.settings import Settings


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def expiration(minutes: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(hours=8, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def request(i: int, **over: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"1380012{i:04d}",
        "PhoneNoB": f"1390012{i:04d}",
        "Expiration": expiration(),
        "OutId": f"seal-{i}",
    }
    req.update(over)
    return req


def raw_field(client: redis.Redis, key: str, name: str) -> str:
    v = client.hget(keys.bind_record(key), name)
    return v.decode() if isinstance(v, bytes) else (v or "")


# --- the primitive ---------------------------------------------------------------------------------


def test_a_sealed_value_opens_to_its_text_and_never_shows_it() -> None:
    """AES-GCM with a random nonce: two seals of one text differ; both open; the prefix names the key."""
    raw = new_key()
    dk = DataKeys.parse(raw)
    text = '{"PhoneNoA":"13800120001"}'
    one, two = dk.seal(text), dk.seal(text)
    assert one != two and one.startswith(PREFIX) and "13800120001" not in one
    assert sealed_key_id(one) == key_id(base64.urlsafe_b64decode(raw)) == dk.first_id
    assert dk.unseal(one) == dk.unseal(two) == text
    assert dk.seal("") == "" and dk.unseal(text) == text  # empty stays empty; plaintext passes


def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    """NEW,OLD: values sealed under OLD open; new values are sealed under NEW."""
    old, new = new_key(), new_key()
    sealed_old = DataKeys.parse(old).seal("a")
    both = DataKeys.parse(f"{new},{old}")
    assert both.unseal(sealed_old) == "a"
    assert sealed_key_id(both.seal("a")) == DataKeys.parse(new).first_id
    assert both.needs_reseal(sealed_old) and not both.needs_reseal(both.seal("a"))


def test_a_wrong_missing_or_malformed_key_is_a_typed_error_naming_the_problem() -> None:
    """DataKeyError, with the key id that is needed; tampering is detected."""
    sealed = DataKeys.parse(new_key()).seal("secret")
    with pytest.raises(DataKeyError, match="does not hold"):
        DataKeys.parse(new_key()).unseal(sealed)
    with pytest.raises(DataKeyError, match="AXB_DATA_KEY is not set"):
        DataKeys().unseal(sealed)
    with pytest.raises(DataKeyError, match="key 1 is not 32 bytes"):
        DataKeys.parse("too-short")
    dk = DataKeys.parse(new_key())
    good = dk.seal("secret")
    tampered = good[:-4] + ("AAAA" if good[-4:] != "AAAA" else "BBBB")
    with pytest.raises(DataKeyError, match="does not open"):
        dk.unseal(tampered)


def test_the_key_is_a_secret_never_printed(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Settings keep AXB_DATA_KEY as a SecretStr: not in repr, str or a dump."""
    raw = new_key()
    monkeypatch.setenv("AXB_DATA_KEY", raw)
    s = Settings()
    assert s.data_key is not None and s.data_key.get_secret_value() == raw
    assert raw not in repr(s) and raw not in str(s) and raw not in str(s.model_dump())


# --- through the pipeline ----------------------------------------------------------------------------


def test_with_a_key_records_hold_only_sealed_numbers_and_results_read_back(
    celery_worker: Any, pipeline: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """request, result (and a dead letter's request) are sealed in Redis; get_result opens them."""
    apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    ok = enqueue_bind(request(1)).result(timeout=15)
    refused = enqueue_bind(request(2, PoolKey="FC999999999")).result(timeout=15)
    assert ok.ok and refused.status == "dead_lettered"
    for name in ("request", "result"):
        assert raw_field(pipeline.redis, "seal-1", name).startswith(PREFIX)
    assert raw_field(pipeline.redis, "seal-2", "request").startswith(PREFIX)
    ((_, fields),) = pipeline.redis.xrange(keys.DEAD_LETTERS)
    assert fields[b"request"].startswith(PREFIX.encode())
    again = get_result("seal-1")
    rec = get_runtime().store.get("seal-1")
    assert again is not None and again.dto == ok.dto
    assert rec is not None and rec.request["PhoneNoA"] == "13800120001"
    (dl,) = DeadLetters(pipeline.redis).entries()
    assert dl.request["PhoneNoB"] == "13900120002"


def test_a_producer_with_the_wrong_key_is_refused_and_writes_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    """Redis holds data under one key; a producer with another gets DataKeyError; nothing is created."""
    apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    enqueue_bind(request(3))
    apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    with pytest.raises(DataKeyError, match="does not hold"):
        enqueue_bind(request(4))
    assert not redis_client.exists(keys.bind_record("seal-4"))
    monkeypatch.delenv("AXB_DATA_KEY")
    apply_env(monkeypatch, {})
    with pytest.raises(DataKeyError, match="not set"):
        enqueue_bind(request(5))
    assert not redis_client.exists(keys.bind_record("seal-5"))


def test_the_cli_with_a_wrong_key_says_so_in_one_line_with_exit_code_2(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`axb result KEY` and `axb rekey`: one line naming AXB_DATA_KEY, exit 2, no traceback."""
    apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    enqueue_bind(request(6))
    apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    for args in (["result", "seal-6"], ["rekey"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "AXB_DATA_KEY" in lines[0] and "Traceback" not in result.output


def test_a_worker_with_the_wrong_key_refuses_to_start_and_nothing_is_lost(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`axb worker` exits 2 with one clear log line; the bind waits, pending, and binds once the
    right key is back."""
    right = new_key()
    apply_env(monkeypatch, {"AXB_DATA_KEY": right})
    handle = enqueue_bind(request(7))
    env = {**axb_env(), "AXB_DATA_KEY": new_key()}
    log = tmp_path / "wrong.log"
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker", "-c", "2"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    log.write_bytes(proc.stdout + proc.stderr)
    assert proc.returncode == 2, log.read_text()
    assert "refusing to start" in log.read_text() and "AXB_DATA_KEY does not hold" in log.read_text()
    rec = pipeline.store.get("seal-7")
    assert rec is not None and rec.status == "pending" and rec.attempts == 0
    worker = WorkerProcess(axb_env(), "-c", "2", log_path=tmp_path / "right.log").start()
    try:
        assert handle.result(timeout=30).ok
    finally:
        worker.stop()


def test_the_signed_request_kept_for_proof_is_sealed_and_opens_byte_for_byte(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    """begin_attempt stores `inflight` sealed; the record gives back the very same signed request."""
    from worker.store import BindStore

    apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    store = BindStore(redis_client)
    store.create_many(
        [
            {
                "key": "seal-20",
                "task_id": keys.task_id_for("seal-20"),
                "request": json.dumps(request(20)),
                "fingerprint": "fp",
                "pool": "FC100000001",
                "deadline": 0,
                "expires_at": 0,
                "ttl_s": 3600,
            }
        ]
    )
    signed = {"method": "POST", "url": "http://x/?PhoneNoA=13800120020&Signature=abc", "signed_at": 1.5}
    assert store.begin_attempt("seal-20", signed) == 1
    raw = raw_field(redis_client, "seal-20", "inflight")
    assert raw.startswith(PREFIX) and "13800120020" not in raw
    rec = store.get("seal-20")
    assert rec is not None and rec.inflight == signed


def test_with_a_key_a_lost_request_is_still_resent_byte_for_byte_and_binds_once(
    celery_worker: Any, pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The nonce-replay proof through a sealed `inflight`: one nonce at the vendor, one binding."""
    from tests.test_pipeline import DropFirstRequest
    from worker.vendor import DyplsClient

    apply_env(monkeypatch, {"AXB_DATA_KEY": new_key()})
    transport = DropFirstRequest()
    rt = get_runtime()
    rt.client = DyplsClient(rt.settings, transport=transport)
    res = enqueue_bind(request(21)).result(timeout=15)
    assert res.ok and res.attempts == 2 and transport.dropped == 1
    calls = [c for c in simulator.ledger()["calls"] if c.get("out_id") == "seal-21"]
    assert len(calls) == 1 and len(simulator.ledger()["bindings_by_out_id"]["seal-21"]) == 1


# --- rekey -------------------------------------------------------------------------------------------


def test_rekey_moves_everything_to_the_new_key_idempotently(
    celery_worker: Any, pipeline: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OLD → NEW,OLD → axb rekey (count) → NEW alone reads everything; a second rekey does 0."""
    old, new = new_key(), new_key()
    apply_env(monkeypatch, {"AXB_DATA_KEY": old})
    assert enqueue_bind(request(8)).result(timeout=15).ok
    assert enqueue_bind(request(9, PoolKey="FC999999999")).result(timeout=15).status == "dead_lettered"
    (before,) = DeadLetters(pipeline.redis).entries()
    apply_env(monkeypatch, {"AXB_DATA_KEY": f"{new},{old}"})
    result = CliRunner().invoke(main, ["rekey", "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    # seal-8: request, result; seal-9: request; one dead letter.
    assert counts["record_fields"] == 3 and counts["dead_letters"] == 1 and counts["resealed"] == 4
    apply_env(monkeypatch, {"AXB_DATA_KEY": new})
    new_id = data_keys().first_id
    for key, name in (("seal-8", "request"), ("seal-8", "result"), ("seal-9", "request")):
        assert sealed_key_id(raw_field(pipeline.redis, key, name)) == new_id
    res = get_result("seal-8")
    rec = get_runtime().store.get("seal-8")
    assert res is not None and res.ok and res.dto is not None
    assert rec is not None and rec.request["PhoneNoA"] == "13800120008"
    (after,) = DeadLetters(pipeline.redis).entries()
    assert after.id != before.id and after.dead_lettered_at == before.dead_lettered_at
    assert after.request == before.request
    assert raw_field(pipeline.redis, "seal-9", "dlq_id") == after.id
    again = CliRunner().invoke(main, ["rekey", "--json"])
    assert json.loads(again.output)["resealed"] == 0
    audits = [a for a in DeadLetters(pipeline.redis).audit() if a["op"] == "rekey"]
    assert [a["count"] for a in audits] == ["0", "4"]
