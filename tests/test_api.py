"""`axb api` as a real process, against real Redis, the simulator and a real Celery worker:
binds, idempotency (also 50 clients at once), batches, long-poll results, unbind and extend,
tokens and scopes, masking, health."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from tests.api_fixture import (
    ApiProcess,
    api_env,
    api_pipeline_fixture,
    api_server_fixture,
    bearer,
    make_token,
)
from tests.pipeline_fixture import wait_until
from tests.test_pipeline import expiration
from worker import keys
from worker.tokens import TokenStore

api_server = api_server_fixture()
pipeline = api_pipeline_fixture()

A, B = "13812345678", "13987654321"


def bind_body(out_id: str = "trip-1", **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "PoolKey": "FC100000001",
        "PhoneNoA": A,
        "PhoneNoB": B,
        "Expiration": expiration(),
        "OutId": out_id,
    }
    body.update(over)
    return body


@pytest.fixture
def client(api_server: ApiProcess) -> Any:
    with httpx.Client(base_url=api_server.url, timeout=40) as c:
        yield c


@pytest.fixture
def token(redis_url: str) -> str:
    return make_token(redis_url, "orders", "bind,read,operate")


def test_a_bind_is_accepted_with_202_and_its_result_arrives_through_wait(
    client: httpx.Client, token: str, celery_worker: Any, simulator: Any
) -> None:
    """202 with key, status, task_id and Location; GET ?wait returns the succeeded bind, masked."""
    r = client.post("/v1/binds", json=bind_body(), headers=bearer(token))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["key"] == "trip-1" and body["status"] == "pending" and body["task_id"] and body["created"]
    assert r.headers["location"] == "/v1/binds/trip-1"
    got = client.get(r.headers["location"], params={"wait": 10}, headers=bearer(token))
    assert got.status_code == 200, got.text
    doc = got.json()
    assert doc["status"] == "succeeded" and doc["state"] == "bound" and doc["kind"] == "bind"
    assert doc["SecretBindDTO"]["SubsId"] == simulator.bindings_for("trip-1")[0]
    assert "****" in doc["SecretBindDTO"]["SecretNo"]
    assert A not in got.text and B not in got.text


def test_numbers_are_shown_only_to_a_token_with_the_numbers_scope(
    client: httpx.Client, redis_url: str, token: str, celery_worker: Any, simulator: Any
) -> None:
    """The same result read with a `numbers` token carries the real numbers."""
    reader = make_token(redis_url, "support", "read,numbers")
    client.post("/v1/binds", json=bind_body(), headers=bearer(token))
    doc = client.get("/v1/binds/trip-1", params={"wait": 10}, headers=bearer(reader)).json()
    (binding,) = simulator.bindings()
    assert doc["SecretBindDTO"]["SecretNo"] == binding["secret_no"]
    assert doc["request"]["PhoneNoA"] == A


def test_the_same_key_and_body_again_is_200_and_a_different_body_is_409(
    client: httpx.Client, token: str, celery_worker: Any, simulator: Any
) -> None:
    """Idempotency-Key: a repeat is 200 with the same bind; another request under it is 409."""
    headers = {**bearer(token), "Idempotency-Key": "order-7"}
    body = bind_body()  # built once: the same body, also across a second boundary
    first = client.post("/v1/binds", json=body, headers=headers)
    again = client.post("/v1/binds", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["key"] == first.json()["key"] == "order-7"
    assert again.json()["task_id"] == first.json()["task_id"] and again.json()["created"] is False
    other = client.post("/v1/binds", json={**body, "PhoneNoB": "13900000001"}, headers=headers)
    assert other.status_code == 409
    assert other.json()["Code"] == "axb.IDEMPOTENCY_CONFLICT"
    client.get("/v1/binds/order-7", params={"wait": 10}, headers=bearer(token))
    assert len(simulator.calls(action="BindAxb")) == 1


def test_fifty_clients_posting_the_same_key_at_once_make_one_vendor_binding(
    api_server: ApiProcess, token: str, celery_worker: Any, simulator: Any
) -> None:
    """50 concurrent POSTs of one key: one 202, 49 times 200, one BindAxb at the simulator."""
    start = threading.Barrier(50)
    body = bind_body("trip-50")

    def post(_: int) -> int:
        with httpx.Client(base_url=api_server.url, timeout=30) as c:
            start.wait(10)
            return c.post("/v1/binds", json=body, headers=bearer(token)).status_code

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(post, range(50)))
    assert sorted(codes) == [200] * 49 + [202]
    with httpx.Client(base_url=api_server.url, timeout=30) as c:
        doc = c.get("/v1/binds/trip-50", params={"wait": 10}, headers=bearer(token)).json()
    assert doc["status"] == "succeeded"
    assert len(simulator.bindings_for("trip-50")) == 1
    assert len(simulator.calls(action="BindAxb", out_id="trip-50")) == 1


def test_an_invalid_bind_is_422_naming_the_field_and_vendor_code_with_the_number_masked(
    client: httpx.Client, token: str
) -> None:
    """A bad PhoneNoA and a past Expiration are refused with their codes; no number echoed."""
    r = client.post(
        "/v1/binds",
        json=bind_body(PhoneNoA="23812345678", Expiration="2020-01-01 00:00:00"),
        headers=bearer(token),
    )
    assert r.status_code == 422
    problems = {p["field"]: p["code"] for p in r.json()["Problems"]}
    assert problems == {"PhoneNoA": "isv.MOBILE_NUMBER_ILLEGAL", "Expiration": "isv.EXPIRE_DATE_ILLEGAL"}
    assert "23812345678" not in r.text
    missing = client.post("/v1/binds", json={"PoolKey": "FC100000001"}, headers=bearer(token))
    assert missing.status_code == 422
    assert {p["field"] for p in missing.json()["Problems"]} >= {"PhoneNoA", "PhoneNoB", "Expiration"}


def test_a_batch_reports_each_item_and_a_retried_batch_commits_nothing_twice(
    client: httpx.Client, token: str, celery_worker: Any, simulator: Any
) -> None:
    """Good items are accepted by index, bad ones rejected by index; the retry creates none."""
    items = [bind_body(f"b-{i}", PhoneNoA=f"1381234{i:04d}") for i in range(5)]
    items[2]["PhoneNoB"] = "123"
    items[4] = {**items[4], "IdempotencyKey": "custom-4"}
    r = client.post("/v1/binds:batch", json={"items": items}, headers=bearer(token))
    assert r.status_code == 200, r.text
    out = r.json()
    assert [a["index"] for a in out["accepted"]] == [0, 1, 3, 4]
    assert [a["key"] for a in out["accepted"]] == ["b-0", "b-1", "b-3", "custom-4"]
    assert out["created"] == 4
    (rejected,) = out["rejected"]
    assert rejected["index"] == 2 and rejected["Problems"][0]["field"] == "PhoneNoB"
    retry = client.post("/v1/binds:batch", json={"items": items}, headers=bearer(token)).json()
    assert retry["created"] == 0 and [a["created"] for a in retry["accepted"]] == [False] * 4
    for key in ("b-0", "b-1", "b-3", "custom-4"):
        assert client.get(f"/v1/binds/{key}", params={"wait": 10}, headers=bearer(token)).json()[
            "status"
        ] == ("succeeded")
    assert len(simulator.calls(action="BindAxb")) == 4


def test_a_batch_over_1000_items_or_with_a_mistyped_item_is_refused_whole(
    client: httpx.Client, token: str, redis_client: Any
) -> None:
    """1,001 items: 422 on `items`; a number sent as a JSON number: 422 naming items[1].PhoneNoA."""
    big = client.post("/v1/binds:batch", json={"items": [bind_body()] * 1001}, headers=bearer(token))
    assert big.status_code == 422 and big.json()["Problems"][0]["field"] == "items"
    typed = client.post(
        "/v1/binds:batch",
        json={"items": [bind_body("x"), bind_body("y", PhoneNoA=13812345678)]},
        headers=bearer(token),
    )
    assert typed.status_code == 422
    assert typed.json()["Problems"][0]["field"] == "items[1].PhoneNoA"
    assert redis_client.keys(keys.BIND_RECORD_PATTERN) == []


def test_wait_returns_when_the_bind_ends_and_at_the_timeout_while_it_is_pending(
    client: httpx.Client, token: str, simulator: Any, celery_worker: Any
) -> None:
    """With the vendor at 300 ms the wait ends with the outcome, well before its 10 s."""
    simulator.set_faults(latency_ms=300)
    client.post("/v1/binds", json=bind_body(), headers=bearer(token))
    started = time.monotonic()
    doc = client.get("/v1/binds/trip-1", params={"wait": 10}, headers=bearer(token)).json()
    assert doc["status"] == "succeeded"
    assert time.monotonic() - started < 5


def test_wait_gives_the_current_status_when_the_time_is_up(client: httpx.Client, token: str) -> None:
    """No worker runs: ?wait=1 answers after about a second with the bind still pending."""
    client.post("/v1/binds", json=bind_body(), headers=bearer(token))
    started = time.monotonic()
    doc = client.get("/v1/binds/trip-1", params={"wait": 1}, headers=bearer(token)).json()
    assert doc["status"] == "pending"
    assert 0.9 <= time.monotonic() - started < 5
    unknown = client.get("/v1/binds/nobody", params={"wait": 1}, headers=bearer(token))
    assert unknown.status_code == 404 and unknown.json()["Code"] == "axb.UNKNOWN_KEY"


def test_the_trip_lifecycle_extend_then_unbind(
    client: httpx.Client, token: str, celery_worker: Any, simulator: Any
) -> None:
    """extend moves the vendor's expiry; unbind releases the binding; both answer 202 + Location."""
    client.post("/v1/binds", json=bind_body(), headers=bearer(token))
    assert (
        client.get("/v1/binds/trip-1", params={"wait": 10}, headers=bearer(token)).json()["state"] == "bound"
    )
    new_exp = expiration(180)
    ext = client.post("/v1/binds/trip-1/extend", json={"Expiration": new_exp}, headers=bearer(token))
    assert ext.status_code == 202, ext.text
    assert ext.json()["kind"] == "extend" and ext.headers["location"].startswith("/v1/binds/extend:trip-1:")
    done = client.get(ext.headers["location"], params={"wait": 10}, headers=bearer(token)).json()
    assert done["status"] == "succeeded" and done["outcome"] == "extended"
    again = client.post("/v1/binds/trip-1/extend", json={"Expiration": new_exp}, headers=bearer(token))
    assert again.status_code == 200 and again.json()["key"] == ext.json()["key"]
    unb = client.post("/v1/binds/trip-1/unbind", headers=bearer(token))
    assert unb.status_code == 202 and unb.headers["location"] == "/v1/binds/unbind:trip-1"
    op = client.get(unb.headers["location"], params={"wait": 10}, headers=bearer(token)).json()
    assert op["status"] == "succeeded" and op["outcome"] == "unbound"
    assert client.get("/v1/binds/trip-1", headers=bearer(token)).json()["state"] == "unbound"
    assert simulator.bindings(live_only=True) == []
    unknown = client.post("/v1/binds/nobody/unbind", headers=bearer(token))
    assert unknown.status_code == 404 and unknown.json()["Code"] == "axb.UNKNOWN_KEY"


def test_tokens_missing_unknown_or_revoked_get_401_and_missing_scopes_403(
    client: httpx.Client, redis_url: str
) -> None:
    """401 (with WWW-Authenticate) for no, unknown and revoked tokens; 403 for a scope not held."""
    reader = make_token(redis_url, "reader", "read")
    assert client.post("/v1/binds", json=bind_body()).status_code == 401
    r = client.post("/v1/binds", json=bind_body(), headers=bearer("axb_0123456789ab_" + "x" * 43))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert (
        client.post("/v1/binds", json=bind_body(), headers={"Authorization": "Basic abc"}).status_code == 401
    )
    forbidden = client.post("/v1/binds", json=bind_body(), headers=bearer(reader))
    assert forbidden.status_code == 403 and forbidden.json()["Code"] == "axb.FORBIDDEN"
    assert client.post("/v1/binds/x/unbind", headers=bearer(reader)).status_code == 403
    assert client.get("/v1/binds/x", headers=bearer(reader)).status_code == 404
    TokenStore(redis.Redis.from_url(redis_url)).revoke("reader")
    assert client.get("/v1/binds/x", headers=bearer(reader)).status_code == 401


def test_a_token_over_its_rate_gets_429_with_retry_after(
    redis_server: Any, simulator_server: Any, redis_url: str
) -> None:
    """AXB_API_RATE_LIMIT_QPS=0.2, burst 3: the fourth request within 5 s is 429 with Retry-After."""
    env = api_env(
        redis_url,
        simulator_server.url,
        "axb.api.ratelimit",
        AXB_API_RATE_LIMIT_QPS="1",
        AXB_API_RATE_LIMIT_BURST="3",
    )
    server = ApiProcess(env).start()
    try:
        token = make_token(redis_url, "runaway", "read")
        other = make_token(redis_url, "calm", "read")
        with httpx.Client(base_url=server.url, timeout=10) as c:
            codes = [c.get("/v1/binds/k", headers=bearer(token)).status_code for _ in range(4)]
            assert codes == [404, 404, 404, 429]
            limited = c.get("/v1/binds/k", headers=bearer(token))
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert limited.json()["Code"] == "axb.RATE_LIMITED"
            assert c.get("/v1/binds/k", headers=bearer(other)).status_code == 404
    finally:
        server.stop()


def test_health_and_readiness_need_no_token(client: httpx.Client) -> None:
    """/healthz and /readyz answer 200 without a token while Redis answers."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def test_a_hundred_long_polls_share_one_redis_connection_and_all_wake_with_their_outcome(
    api_server: ApiProcess, token: str, pipeline: Any, simulator: Any, redis_client: Any
) -> None:
    """100 concurrent ?wait requests on pending binds: one pub/sub connection subscribed to 100
    channels; a worker started then binds them, and each request returns succeeded."""
    from celery.contrib.testing.worker import start_worker

    from worker.celery_app import app

    items = [bind_body(f"w-{i}", PhoneNoA=f"1381234{i:04d}") for i in range(100)]
    with httpx.Client(base_url=api_server.url, timeout=30) as c:
        assert (
            c.post("/v1/binds:batch", json={"items": items}, headers=bearer(token)).json()["created"] == 100
        )

    async def poll_all() -> tuple[list[dict[str, str]], list[httpx.Response], float]:
        limits = httpx.Limits(max_connections=150)
        async with httpx.AsyncClient(base_url=api_server.url, timeout=40, limits=limits) as ac:
            polls = [
                asyncio.create_task(ac.get(f"/v1/binds/w-{i}", params={"wait": 25}, headers=bearer(token)))
                for i in range(100)
            ]
            await asyncio.to_thread(
                wait_until, lambda: len(redis_client.pubsub_channels(keys.done_channel("w-*"))) == 100, 15
            )
            subscribers = [cl for cl in redis_client.client_list() if int(cl.get("sub", 0)) > 0]
            queue = pipeline.settings.queue
            with start_worker(app, pool="threads", concurrency=8, perform_ping_check=False, queues=[queue]):
                started = time.monotonic()
                answers = await asyncio.gather(*polls)
                took_s = time.monotonic() - started
            return subscribers, answers, took_s

    subscribers, answers, took_s = asyncio.run(poll_all())
    assert [int(cl["sub"]) for cl in subscribers] == [100]
    assert {a.json()["status"] for a in answers} == {"succeeded"}
    assert took_s < 15, "a waiter slept to its deadline instead of being woken"
    assert redis_client.pubsub_channels(keys.done_channel("*")) == []


def test_a_callback_url_is_recorded_with_numbers_only_for_a_numbers_token(
    client: httpx.Client, token: str, redis_url: str, redis_client: Any
) -> None:
    """CallbackUrl reaches the record; callback_numbers follows the token's `numbers` scope; a bad
    URL in a batch item rejects that item alone."""
    from worker import keys

    full = make_token(redis_url, "support", "bind,numbers")
    url = "http://127.0.0.1:9/axb"
    assert (
        client.post("/v1/binds", json=bind_body("c-1", CallbackUrl=url), headers=bearer(token)).status_code
        == 202
    )
    assert (
        client.post("/v1/binds", json=bind_body("c-2", CallbackUrl=url), headers=bearer(full)).status_code
        == 202
    )
    assert redis_client.hmget(keys.bind_record("c-1"), "callback_url", "callback_numbers") == [url, "0"]
    assert redis_client.hmget(keys.bind_record("c-2"), "callback_url", "callback_numbers") == [url, "1"]
    items = [
        bind_body("c-3", CallbackUrl=url),
        bind_body("c-4", PhoneNoA="13812340004", CallbackUrl="gopher://x"),
    ]
    out = client.post("/v1/binds:batch", json={"items": items}, headers=bearer(token)).json()
    assert [a["key"] for a in out["accepted"]] == ["c-3"]
    (rejected,) = out["rejected"]
    assert rejected["index"] == 1 and rejected["Problems"][0]["field"] == "CallbackUrl"
    assert rejected["Code"] == "axb.CALLBACK_URL_REFUSED"


def test_a_long_poll_survives_a_redis_restart_and_still_wakes_with_the_outcome(
    api_server: ApiProcess, token: str, pipeline: Any, redis_server: Any, redis_url: str
) -> None:
    """Redis restarts while a ?wait request holds: the API's pub/sub connection comes back and
    resubscribes, and the request still returns the bind succeeded, long before its wait ends."""
    from celery.contrib.testing.worker import start_worker

    from worker.celery_app import app

    with httpx.Client(base_url=api_server.url, timeout=40) as c:
        assert c.post("/v1/binds", json=bind_body(), headers=bearer(token)).status_code == 202
    probe = redis.Redis.from_url(redis_url)

    def subscribed() -> bool:
        try:
            return bool(probe.pubsub_channels(keys.done_channel("trip-1")))
        except redis.ConnectionError:
            return False

    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        poll = pool.submit(
            lambda: httpx.get(
                f"{api_server.url}/v1/binds/trip-1", params={"wait": 30}, headers=bearer(token), timeout=40
            )
        )
        wait_until(subscribed, 10)
        redis_server.restart()
        wait_until(subscribed, 15)
        with start_worker(
            app, pool="threads", concurrency=4, perform_ping_check=False, queues=[pipeline.settings.queue]
        ):
            answer = poll.result(35)
    probe.close()
    assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
    assert time.monotonic() - started < 28
