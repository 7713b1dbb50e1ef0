"""On-call's dead-letter tools: list, show, stats, replay, purge, watch; Sentry events; no raw numbers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from click.testing import CliRunner
from pydantic import SecretStr

from tests.pipeline_fixture import ROOT, axb_env
from tests.sentry_capture import SentryCapture
from tests.test_pipeline import request
from tests.waiting import finished_result, wait_until
from worker.cli import main
from worker.producer import enqueue_binds
from worker.runtime import Runtime

RAW = [f"1380000{i:04d}" for i in range(40, 46)] + [f"1390000{i:04d}" for i in range(40, 46)]


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def make_dead_letters(simulator: Any) -> list[str]:
    """Two unknown-pool binds and two account-level refusals → four dead letters."""
    bad_pool = [request(40 + i, PoolKey="FC999999999") for i in range(2)]
    simulator.set_faults(force_code="isv.ACCOUNT_ABNORMAL", force_count=2)
    res = enqueue_binds([request(42), request(43)])
    keys = [h.key for h in res.handles]
    for h in res.handles:
        h.result(timeout=15)
    res2 = enqueue_binds(bad_pool)
    for h in res2.handles:
        h.result(timeout=15)
    return keys + [h.key for h in res2.handles]


def test_stats_list_and_show_group_and_mask_dead_letters(celery_worker: Any, simulator: Any) -> None:
    """stats counts by code; list filters; show gives the history; no raw number anywhere."""
    make_dead_letters(simulator)
    stats = json.loads(run("dlq", "stats", "--json").stdout)
    assert stats["total"] == 4
    assert stats["by_code"] == {"isv.ACCOUNT_ABNORMAL": 2, "isv.POOLKEY_NOT_EXISTS": 2}
    assert stats["oldest_age_s"] is not None and stats["oldest_age_s"] < 60

    only = json.loads(run("dlq", "list", "--json", "--code", "isv.ACCOUNT_ABNORMAL").stdout)
    assert len(only) == 2
    assert len(json.loads(run("dlq", "list", "--json", "--pool", "FC999999999").stdout)) == 2
    assert len(json.loads(run("dlq", "list", "--json", "--limit", "1").stdout)) == 1
    assert len(json.loads(run("dlq", "list", "--json", "--since", "1h").stdout)) == 4
    assert json.loads(run("dlq", "list", "--json", "--since", "2099-01-01T00:00:00").stdout) == []
    table = run("dlq", "list")
    assert "isv.POOLKEY_NOT_EXISTS" in table.output

    shown = run("dlq", "show", only[0]["id"])
    assert "history" in shown.output and "isv.ACCOUNT_ABNORMAL" in shown.output
    raw = json.loads(run("dlq", "show", only[0]["id"], "--json", "--show-numbers").stdout)
    assert raw["request"]["PhoneNoA"] in RAW and raw["history"][0]["code"] == "isv.ACCOUNT_ABNORMAL"
    for out in (table.output, shown.output, run("dlq", "list", "--json").stdout):
        assert not any(n in out for n in RAW)


def test_replay_reenqueues_under_the_same_key_and_failures_come_back_with_history(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """After the account is fixed, replay binds once; replaying while still broken re-dead-letters."""
    make_dead_letters(simulator)
    simulator.set_faults(force_code="isv.ACCOUNT_ABNORMAL", force_count=1)
    first = json.loads(run("dlq", "list", "--json", "--code", "isv.ACCOUNT_ABNORMAL").stdout)
    out = json.loads(run("dlq", "replay", first[0]["id"], "--json").stdout)
    assert out["replayed"] == [first[0]["id"]]
    again = wait_until(lambda: finished_result(first[0]["key"]), timeout=15)
    assert again is not None and again.status == "dead_lettered"
    back = json.loads(run("dlq", "list", "--json", "--code", "isv.ACCOUNT_ABNORMAL").stdout)
    entry = next(e for e in back if e["key"] == first[0]["key"])
    assert entry["id"] != first[0]["id"]
    assert [h["code"] for h in entry["history"]] == [
        "isv.ACCOUNT_ABNORMAL",
        "axb.REPLAYED",
        "isv.ACCOUNT_ABNORMAL",
    ]

    out = json.loads(run("dlq", "replay", "--code", "isv.ACCOUNT_ABNORMAL", "--json").stdout)
    assert len(out["replayed"]) == 2
    for e in back:
        r = wait_until(lambda key=e["key"]: finished_result(key), timeout=15)
        assert r.ok
        assert len(simulator.bindings_for(e["key"])) == 1
    assert json.loads(run("dlq", "stats", "--json").stdout)["by_code"] == {"isv.POOLKEY_NOT_EXISTS": 2}


def test_ambiguous_dead_letters_need_force_to_replay(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """An entry whose binding may exist is not replayed without --force."""
    pipeline.store.create_many(
        [
            {
                "key": "amb",
                "task_id": "t",
                "request": json.dumps(request(50)),
                "fingerprint": "f",
                "pool": "FC100000001",
                "deadline": int(time.time() * 1000) + 3_600_000,
                "expires_at": int(time.time() * 1000) + 7_200_000,
                "ttl_s": 7200,
            }
        ]
    )
    entry_id = pipeline.store.dead_letter("amb", code="axb.AMBIGUOUS_OUTCOME", message="maybe bound")
    assert entry_id
    out = json.loads(run("dlq", "replay", entry_id, "--json").stdout)
    assert out["replayed"] == [] and "--force" in out["skipped"][0]["reason"]
    out = json.loads(run("dlq", "replay", entry_id, "--json", "--force").stdout)
    assert out["replayed"] == [entry_id]


def test_purge_asks_first_and_leaves_an_audit_record(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """No confirmation, no purge; --yes purges and the audit stream says what, how many, who."""
    make_dead_letters(simulator)
    refused = run("dlq", "purge", "--code", "isv.POOLKEY_NOT_EXISTS", input="n\n")
    assert refused.exit_code != 0
    assert json.loads(run("dlq", "stats", "--json").stdout)["total"] == 4
    assert run("dlq", "purge").exit_code != 0  # a selector is required
    done = run("dlq", "purge", "--code", "isv.POOLKEY_NOT_EXISTS", "--yes")
    assert done.exit_code == 0 and "purged 2" in done.output
    assert json.loads(run("dlq", "stats", "--json").stdout)["by_code"] == {"isv.ACCOUNT_ABNORMAL": 2}
    from worker.deadletters import DeadLetters

    (audit,) = DeadLetters(pipeline.redis).audit()
    assert (
        audit["op"] == "purge"
        and audit["count"] == "2"
        and audit["selection"] == "code=isv.POOLKEY_NOT_EXISTS"
    )
    assert audit["user"] and audit["host"]


def test_watch_prints_new_dead_letters_as_they_arrive(celery_worker: Any, simulator: Any) -> None:
    """`axb dlq watch --count 1` shows the next dead letter, masked."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dlq", "watch", "--count", "1", "--interval", "0.2"],
        env=axb_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    assert b"watching" in proc.stderr.readline()  # ready: anything from now on is shown
    enqueue_binds([request(60, PoolKey="FC999999999")]).handles[0].result(timeout=15)
    out, _ = proc.communicate(timeout=20)
    assert b"isv.POOLKEY_NOT_EXISTS" in out and b"order-60" in out
    assert b"13800000060" not in out


def test_each_dead_letter_is_one_sentry_event_without_personal_data(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """One event per dead letter, tagged and fingerprinted by code; account codes fatal; retries silent."""
    import sentry_sdk

    from worker.observability import init_sentry

    capture = SentryCapture()
    settings = pipeline.settings.model_copy(update={"sentry_dsn": SecretStr(capture.dsn)})
    try:
        assert init_sentry(settings)
        simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=1)
        enqueue_binds([request(70)]).handles[0].result(timeout=15)  # one retry, then OK: no event
        make_dead_letters(simulator)
        # The record turns dead_lettered a moment before the worker reports it: wait for the events.
        wait_until(lambda: sentry_sdk.flush(1) or len(capture.events) >= 4, timeout=10)
        # Then a marker event: the SDK sends in order, so once it has arrived, every event the
        # worker reported before it has arrived too (no fifth one still on its way).
        capture.send_barrier(timeout_s=10)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init(dsn=None)
        capture.close()
    events = capture.events
    assert len(events) == 4, capture.all_text()[:3000]
    by_code: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_code.setdefault(e["tags"]["vendor_code"], []).append(e)
        assert e["fingerprint"] == ["axb-dead-letter", e["tags"]["vendor_code"]]
    assert {e["level"] for e in by_code["isv.ACCOUNT_ABNORMAL"]} == {"fatal"}
    assert {e["level"] for e in by_code["isv.POOLKEY_NOT_EXISTS"]} == {"error"}
    assert {e["tags"]["pool"] for e in by_code["isv.POOLKEY_NOT_EXISTS"]} == {"FC999999999"}
    text = capture.all_text()
    assert not any(n in text for n in [*RAW, "13800000070", "13900000070"])
    assert pipeline.settings.secret() not in text
