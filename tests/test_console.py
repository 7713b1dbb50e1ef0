"""The on-call console over plain HTTP: who gets in, what is refused, the orphan ledger, the
per-minute outcome counters. The browser tests are in tests/test_console_browser.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from click.testing import CliRunner
from prometheus_client import REGISTRY

from tests.api_fixture import ApiProcess, api_pipeline_fixture, api_server_fixture, make_token
from tests.conftest import free_port
from tests.console_helpers import csrf_of, login, make_dead_letter
from tests.pipeline_fixture import ROOT
from tests.test_pipeline import request
from tests.waiting import wait_until
from worker import keys
from worker.cli import main
from worker.console.chart import read_minutes
from worker.orphans import list_possible_orphans, orphan_id, record_possible_orphan
from worker.producer import enqueue_binds
from worker.runtime import Runtime

api_server = api_server_fixture()
pipeline = api_pipeline_fixture()
A, B = "13812345678", "13987654321"


@pytest.fixture
def client(api_server: ApiProcess, redis_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=20) as c:
        yield c


def test_a_page_without_a_session_sends_you_to_the_login_page(client: httpx.Client) -> None:
    for path in ("/console/", "/console/dlq", "/console/audit", "/console/orphans", "/console/live"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/console/login", path


def test_a_form_post_without_a_session_is_refused(client: httpx.Client) -> None:
    r = client.post("/console/dlq/action", data={"op": "purge", "ids": "1-0", "confirm": "yes"})
    assert r.status_code == 401


def test_a_token_without_operate_cannot_log_in_and_a_bad_token_neither(
    client: httpx.Client, redis_url: str
) -> None:
    r = login(client, make_token(redis_url, "reader", "bind,read"))
    assert (
        r.status_code == 401 and "operate" in r.text and "axb_console=" not in r.headers.get("set-cookie", "")
    )
    r = login(client, "axb_0123456789ab_" + "x" * 43)
    assert r.status_code == 401 and "unknown or revoked" in r.text


def test_login_sets_an_httponly_samesite_strict_cookie_holding_no_token(
    client: httpx.Client, redis_url: str
) -> None:
    token = make_token(redis_url, "oncall", "operate")
    r = login(client, token)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("axb_console=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert token not in cookie and token.split("_", 2)[2] not in cookie  # the secret may itself hold "_"
    page = client.get("/console/")
    assert page.status_code == 200 and "No hold: calls flow." in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in page.text and "style=" not in page.text


def test_a_login_form_without_its_csrf_token_is_refused(client: httpx.Client, redis_url: str) -> None:
    token = make_token(redis_url, "oncall", "operate")
    client.get("/console/login")
    r = client.post("/console/login", data={"token": token})
    assert r.status_code == 403 and "axb_console=" not in r.headers.get("set-cookie", "")


def test_a_form_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: httpx.Client, redis_url: str, pipeline: Runtime
) -> None:
    login(client, make_token(redis_url, "oncall", "operate"))
    entry = pipeline.redis.xadd(keys.DEAD_LETTERS, {"key": "k1", "code": "isv.X", "request": ""})
    entry_id = entry.decode() if isinstance(entry, bytes) else entry
    for data in (
        {"op": "purge", "ids": entry_id, "confirm": "yes"},
        {"op": "purge", "ids": entry_id, "confirm": "yes", "csrf": "forged"},
    ):
        r = client.post("/console/dlq/action", data=data)
        assert r.status_code == 403
    assert pipeline.redis.xlen(keys.DEAD_LETTERS) == 1
    page = client.get(f"/console/dlq/{entry_id}")
    r = client.post(
        "/console/dlq/action",
        data={"op": "purge", "ids": entry_id, "confirm": "yes", "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 303 and pipeline.redis.xlen(keys.DEAD_LETTERS) == 0


def test_a_revoked_token_ends_its_sessions(client: httpx.Client, redis_url: str) -> None:
    from worker.tokens import TokenStore

    login(client, make_token(redis_url, "oncall", "operate"))
    assert client.get("/console/dlq").status_code == 200
    conn = redis.Redis.from_url(redis_url)
    TokenStore(conn).revoke("oncall")
    conn.close()
    assert client.get("/console/dlq").status_code == 303


def test_numbers_show_only_on_request_and_only_with_the_numbers_scope(
    client: httpx.Client, redis_url: str, celery_worker: Any, simulator: Any
) -> None:
    simulator.set_faults(force_code="isv.ACCOUNT_ABNORMAL", force_count=1)
    [handle] = enqueue_binds([request(1, PhoneNoA=A, PhoneNoB=B)]).handles
    handle.result(timeout=15)
    login(client, make_token(redis_url, "oncall", "operate"))
    entry_id = json.loads(CliRunner().invoke(main, ["dlq", "list", "--json"]).stdout)[0]["id"]
    entry = client.get(f"/console/dlq/{entry_id}?numbers=1").text
    assert "isv.ACCOUNT_ABNORMAL" in entry and "138****5678" in entry
    assert A not in entry and "show-numbers" not in entry  # no toggle without the numbers scope
    listing = client.get("/console/dlq?numbers=1").text
    assert "isv.ACCOUNT_ABNORMAL" in listing and A not in listing
    with httpx.Client(base_url=str(client.base_url), timeout=20) as full:
        login(full, make_token(redis_url, "lead", "operate,numbers"))
        assert A not in full.get(f"/console/dlq/{entry_id}").text
        assert A in full.get(f"/console/dlq/{entry_id}?numbers=1").text


def test_every_terminal_bind_is_counted_in_its_minute_by_status_and_code(
    celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    simulator.set_faults(force_code="isv.ACCOUNT_ABNORMAL", force_count=1)
    for h in enqueue_binds([request(i) for i in range(3)]).handles:
        h.result(timeout=15)
    counted: Counter[str] = sum(read_minutes(pipeline.redis, 5), start=Counter())
    assert counted["bind:succeeded"] == 2 and counted["bind:dead_lettered"] == 1
    assert counted["dlq:isv.ACCOUNT_ABNORMAL"] == 1
    minute = int(time.time() // 60)
    ttls = [pipeline.redis.ttl(keys.outcome_minute(m)) for m in (minute - 1, minute)]
    assert any(0 < t <= 90_000 for t in ttls)


def test_possible_orphans_are_recorded_once_listed_masked_and_counted(
    pipeline: Runtime,
) -> None:
    now = int(time.time() * 1000)
    before = REGISTRY.get_sample_value("axb_possible_orphans_total") or 0.0
    for _ in range(2):
        record_possible_orphan(
            pipeline.redis,
            key=f"trip-{A}",
            request_id="REQ-1",
            pool="FC1",
            sent_at_ms=now,
            expires_at_ms=now + 7_200_000,
        )
    assert REGISTRY.get_sample_value("axb_possible_orphans_total") == before + 1
    [o] = list_possible_orphans(pipeline.redis)
    assert (o.key, o.request_id, o.pool, o.expires_at_ms) == (f"trip-{A}", "REQ-1", "FC1", now + 7_200_000)
    assert 7000 < pipeline.redis.ttl(keys.possible_orphan(orphan_id(o.key, "REQ-1"))) <= 7200
    out = CliRunner().invoke(main, ["orphans", "list", "--json"])
    assert out.exit_code == 0
    listed = json.loads(out.stdout)
    assert listed[0]["request_id"] == "REQ-1" and A not in out.stdout and "138****5678" in out.stdout
    table = CliRunner().invoke(main, ["orphans", "list"])
    assert "REQ-1" in table.stdout and A not in table.stdout


def test_replay_all_of_a_filter_asks_first_then_replays_only_the_matching_entries(
    client: httpx.Client, redis_url: str, pipeline: Runtime
) -> None:
    for n in range(2):
        make_dead_letter(pipeline, f"sys-{n}", n, "isp.SYSTEM_ERROR")
    other = make_dead_letter(pipeline, "pool-0", 5, "isv.POOLKEY_NOT_EXISTS")
    ambiguous = make_dead_letter(pipeline, "amb-0", 6, "axb.AMBIGUOUS_OUTCOME")
    login(client, make_token(redis_url, "bob", "operate"))
    csrf = csrf_of(client.get("/console/dlq").text)
    form = {"op": "replay", "scope": "filter", "csrf": csrf}
    asked = client.post("/console/dlq/action?code=isp.SYSTEM_ERROR", data=form)
    assert asked.status_code == 200 and "Confirm: replay 2" in asked.text
    assert pipeline.redis.xlen(keys.DEAD_LETTERS) == 4  # nothing done before the confirmation
    done = client.post("/console/dlq/action?code=isp.SYSTEM_ERROR", data={**form, "confirm": "yes"})
    assert done.status_code == 303
    left = {dl["id"] for dl in json.loads(CliRunner().invoke(main, ["dlq", "list", "--json"]).stdout)}
    assert left == {other, ambiguous}
    assert {pipeline.store.get(f"sys-{n}").status for n in range(2)} == {"pending"}  # type: ignore[union-attr]
    # Ambiguous entries are never replayed, even picked by id: only rebind or resolve.
    asked = client.post("/console/dlq/action", data={"op": "replay", "ids": ambiguous, "csrf": csrf})
    assert "Confirm: replay 0" in asked.text and "left out" in asked.text
    audit = client.get("/console/audit").text
    assert "bob" in audit and "isp.SYSTEM_ERROR" in audit


def test_axb_console_serves_the_console_on_its_own_port(api_server: ApiProcess) -> None:
    port = free_port()
    url = f"http://127.0.0.2:{port}"  # a loopback address other than the default's
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "console", "--host", "127.0.0.2", "--port", str(port)],
        env=api_server.env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def login_page() -> bool:
            try:
                return httpx.get(f"{url}/console/login", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(login_page, timeout=30)
        assert "Content-Security-Policy" in httpx.get(f"{url}/console/login").headers
    finally:
        proc.terminate()
        proc.wait(15)


def test_ids_that_name_nothing_are_answered_not_crashed_on(client: httpx.Client, redis_url: str) -> None:
    login(client, make_token(redis_url, "oncall", "operate"))
    for bad in ("nope", "99999999999999999999999-0", "1-0"):
        assert client.get(f"/console/dlq/{bad}").status_code == 404
    csrf = csrf_of(client.get("/console/dlq").text)
    asked = client.post("/console/dlq/action", data={"op": "purge", "ids": ["nope", "1-0"], "csrf": csrf})
    assert asked.status_code == 200 and "purge for good 0 dead letter" in asked.text


def test_log_out_needs_the_csrf_token_and_ends_the_session(client: httpx.Client, redis_url: str) -> None:
    login(client, make_token(redis_url, "oncall", "operate"))
    csrf = csrf_of(client.get("/console/").text)
    assert client.post("/console/logout", data={}).status_code == 403
    assert client.get("/console/dlq").status_code == 200
    assert client.post("/console/logout", data={"csrf": csrf}).status_code == 303
    assert client.get("/console/dlq").status_code == 303
