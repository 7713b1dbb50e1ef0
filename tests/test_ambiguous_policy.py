"""AXB_ON_AMBIGUOUS: what follows when the first copy of a bind reached the vendor and its answer
was lost (dead letter, or bind again), and the possible-orphans ledger that records that copy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from pydantic import ValidationError

from tests.api_fixture import ApiProcess, api_pipeline_fixture, api_server_fixture, bearer, make_token
from tests.console_helpers import login
from tests.test_lifecycle import LoseFirstAnswer
from tests.test_pipeline import bindings_for, calls_for, expiration, request
from worker import errors, keys
from worker.callbacks.document import bind_document
from worker.cli import main
from worker.cli.errors import describe
from worker.deadletters import DeadLetters
from worker.orphans import list_possible_orphans, orphan_id, record_possible_orphan
from worker.producer import enqueue_bind, get_result
from worker.runtime import Runtime
from worker.settings import Settings

api_server = api_server_fixture()
pipeline = api_pipeline_fixture()


@pytest.fixture
def lossy(pipeline: Runtime) -> Iterator[LoseFirstAnswer]:
    from worker.vendor import DyplsClient

    transport = LoseFirstAnswer()
    pipeline.client = DyplsClient(pipeline.settings, transport=transport)
    yield transport


def orphans_total() -> float:
    return REGISTRY.get_sample_value("axb_possible_orphans_total") or 0.0


def orphans_of(pipeline: Runtime, key: str) -> list[Any]:
    return [o for o in list_possible_orphans(pipeline.redis) if o.key == key]


def ledger_ttl_s(pipeline: Runtime, key: str, nonce: str) -> int:
    return int(pipeline.redis.ttl(keys.possible_orphan(orphan_id(key, nonce))))


def test_the_policy_is_dead_letter_unless_set_and_a_junk_value_names_the_variable() -> None:
    assert Settings().on_ambiguous == "dead_letter"
    assert Settings(on_ambiguous=" Rebind ").on_ambiguous == "rebind"
    with pytest.raises(ValidationError) as caught:
        Settings(on_ambiguous="retry")
    line = describe(caught.value)
    assert line.startswith("bad settings:") and "AXB_ON_AMBIGUOUS" in line and "'retry'" in line


def test_dead_letter_policy_lists_the_first_copy_and_marks_the_result(
    celery_worker: Any, simulator: Any, pipeline: Runtime, lossy: LoseFirstAnswer
) -> None:
    """The first copy bound, its answer lost; the re-send is answered SignatureNonceUsed: a dead
    letter, one ledger entry (TTL ≈ the Expiration) counted once, possible_orphan on the result."""
    before = orphans_total()
    res = enqueue_bind(request(301, Expiration=expiration(24 * 60))).result(timeout=20)
    assert res.status == "dead_lettered" and res.code == errors.AMBIGUOUS_OUTCOME
    assert res.possible_orphan and res.as_dict()["possible_orphan"] is True
    assert lossy.lost == 1 and len(bindings_for(simulator, "order-301")) == 1
    [orphan] = orphans_of(pipeline, "order-301")
    assert orphan.pool == "FC100000001" and orphan.expires_at_ms == res.expires_at
    assert orphans_total() == before + 1
    [nonce] = {c["nonce"] for c in calls_for(simulator, "order-301")}  # one copy, sent twice
    ttl_s = ledger_ttl_s(pipeline, "order-301", nonce)
    assert abs(ttl_s - (res.expires_at - time.time() * 1000) / 1000) < 120
    # The dead letter carries the first copy: a rebind from the console records the same entry.
    [dl] = [
        d
        for d in DeadLetters(pipeline.redis).entries(code=errors.AMBIGUOUS_OUTCOME, limit=1000)
        if d.key == "order-301"
    ]
    assert dl.first_copy["nonce"] == nonce
    assert dl.as_dict()["first_copy"] == dl.first_copy  # what `axb dlq show` and the console print
    record_possible_orphan(
        pipeline.redis,
        key=dl.key,
        request_id=dl.request_id,
        pool=dl.pool,
        sent_at_ms=int(dl.first_copy["sent_at"]),
        expires_at_ms=dl.request_expires_ms(),
        note="rebound from the console",
        nonce=dl.first_copy["nonce"],
    )
    [again] = orphans_of(pipeline, "order-301")
    assert again.note == "rebound from the console" and again.sent_at_ms == orphan.sent_at_ms
    assert orphans_total() == before + 1


def test_rebind_policy_binds_again_with_a_fresh_signature_and_lists_the_first_copy(
    celery_worker: Any,
    simulator: Any,
    pipeline: Runtime,
    lossy: LoseFirstAnswer,
    monkeypatch: pytest.MonkeyPatch,
    api_server: ApiProcess,
    redis_url: str,
) -> None:
    """Proved by SignatureNonceUsed, then signed afresh: succeeded, two bindings at the vendor,
    one ledger entry for the first copy, possible_orphan true in the result (API, CLI, console),
    and the history says what happened."""
    monkeypatch.setattr(pipeline.settings, "on_ambiguous", "rebind")
    before = orphans_total()
    res = enqueue_bind(request(302, Expiration=expiration(24 * 60))).result(timeout=20)
    assert res.ok and res.dto is not None and res.possible_orphan
    bindings = bindings_for(simulator, "order-302")
    assert len(bindings) == 2 and res.dto.subs_id == bindings[-1]
    calls = calls_for(simulator, "order-302")
    first_nonce = calls[0]["nonce"]
    assert [c["code"] for c in calls] == ["OK", "SignatureNonceUsed", "OK"]
    assert calls[1]["nonce"] == first_nonce != calls[2]["nonce"]
    [orphan] = orphans_of(pipeline, "order-302")
    assert orphans_total() == before + 1
    assert abs(orphan.sent_at_ms - calls[0]["time"] * 1000) < 5_000
    assert orphan.request_id == ""  # the first copy's answer, and its RequestId, were lost
    ttl_s = ledger_ttl_s(pipeline, "order-302", first_nonce)
    assert abs(ttl_s - (res.expires_at - time.time() * 1000) / 1000) < 120
    hist = pipeline.store.history("order-302")
    assert [h["code"] for h in hist] == [errors.READ_TIMEOUT, "SignatureNonceUsed", "OK"]
    assert hist[1]["replay"] and hist[1]["then"] == "rebind"
    assert hist[2]["rebind"] and not hist[2]["replay"]
    # The result, as every reader shows it.
    assert bind_document(res, show_numbers=False)["possible_orphan"] is True
    cli = CliRunner().invoke(main, ["result", "order-302", "--json"])
    assert cli.exit_code == 0 and json.loads(cli.stdout)["possible_orphan"] is True
    with httpx.Client(base_url=api_server.url, timeout=20) as client:
        doc = client.get("/v1/binds/order-302", headers=bearer(make_token(redis_url, "order-system"))).json()
        assert doc["possible_orphan"] is True and doc["status"] == "succeeded"
        login(client, make_token(redis_url, "oncall", "operate"))
        page = client.get("/console/bind", params={"key": "order-302"}).text
        assert 'id="possible-orphan">yes' in page and "(rebind)" in page


def test_rebind_policy_also_binds_again_when_it_is_too_late_to_prove(
    celery_worker: Any,
    simulator: Any,
    pipeline: Runtime,
    lossy: LoseFirstAnswer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The replay window has passed: the first copy may or may not have bound. rebind signs
    afresh (no re-send) and lists the first copy all the same."""
    monkeypatch.setattr(pipeline.settings, "on_ambiguous", "rebind")
    monkeypatch.setattr(pipeline.settings, "replay_window_s", 0.001)
    res = enqueue_bind(request(303)).result(timeout=20)
    assert res.ok and res.possible_orphan
    calls = calls_for(simulator, "order-303")
    assert [c["code"] for c in calls] == ["OK", "OK"] and calls[0]["nonce"] != calls[1]["nonce"]
    assert len(bindings_for(simulator, "order-303")) == 2
    [orphan] = orphans_of(pipeline, "order-303")
    assert "too late to prove" in orphan.note
    hist = pipeline.store.history("order-303")
    assert [bool(h.get("rebind")) for h in hist] == [False, True]


def test_a_bind_with_no_ambiguity_is_not_a_possible_orphan(
    celery_worker: Any, simulator: Any, pipeline: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline.settings, "on_ambiguous", "rebind")
    before = orphans_total()
    res = enqueue_bind(request(304)).result(timeout=20)
    assert res.ok and not res.possible_orphan and res.as_dict()["possible_orphan"] is False
    assert len(bindings_for(simulator, "order-304")) == 1 and not orphans_of(pipeline, "order-304")
    assert orphans_total() == before
    rec = get_result("order-304")
    assert rec is not None and not rec.possible_orphan
