"""Bad input of every kind gets a clear 4xx in the one error shape from the real `axb api`
process; nothing a client sends makes it answer 500. Also: the committed OpenAPI document is
the one the app serves."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.api_fixture import (
    ApiProcess,
    api_env,
    api_pipeline_fixture,
    api_server_fixture,
    bearer,
    make_token,
)
from tests.conftest import free_port
from tests.test_pipeline import expiration
from worker.api.openapi import COMMITTED, text
from worker.api.schemas import bind_parameter_names, model_parameter_names

api_server = api_server_fixture(AXB_API_MAX_BODY_BYTES="100000")
pipeline = api_pipeline_fixture()


@pytest.fixture
def client(api_server: ApiProcess) -> Any:
    with httpx.Client(base_url=api_server.url, timeout=20) as c:
        yield c


@pytest.fixture
def auth(redis_url: str) -> dict[str, str]:
    return bearer(make_token(redis_url, "orders", "bind,read,operate"))


def good(**over: Any) -> dict[str, Any]:
    body = {"PoolKey": "FC100000001", "PhoneNoA": "13812345678", "PhoneNoB": "13987654321"}
    body["Expiration"] = expiration()
    body.update(over)
    return body


def check_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["Code"] == code and body["Message"]
    assert isinstance(body["Problems"], list)
    return body


def test_a_body_that_is_not_json_is_400(client: httpx.Client, auth: dict[str, str]) -> None:
    """Broken JSON, and JSON nested beyond any parser's depth, are 400 axb.MALFORMED_JSON or 422."""
    headers = {**auth, "Content-Type": "application/json"}
    check_error(client.post("/v1/binds", content=b'{"PoolKey": ', headers=headers), 400, "axb.MALFORMED_JSON")
    check_error(client.post("/v1/binds", content=b"\xff\xfe", headers=headers), 400, "axb.MALFORMED_JSON")
    deep = client.post("/v1/binds", content=b"[" * 50_000 + b"]" * 50_000, headers=headers)
    assert deep.status_code in (400, 422), deep.text
    plain = client.post(
        "/v1/binds", content=json.dumps(good()).encode(), headers={**auth, "Content-Type": "text/plain"}
    )
    body = check_error(plain, 422, "isv.INVALID_PARAMETERS")
    assert "application/json" in body["Message"]


def test_wrong_types_and_unknown_fields_are_422_naming_the_field(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    """A number where text is due, a string where a bool is due, an unknown field, a list body."""
    r = check_error(
        client.post("/v1/binds", json=good(PhoneNoA=13812345678), headers=auth), 422, "isv.INVALID_PARAMETERS"
    )
    assert [p["field"] for p in r["Problems"]] == ["PhoneNoA"]
    assert "13812345678" not in json.dumps(r)
    r = check_error(
        client.post("/v1/binds", json=good(IsRecordingEnabled="yes"), headers=auth),
        422,
        "isv.INVALID_PARAMETERS",
    )
    assert r["Problems"][0]["field"] == "IsRecordingEnabled"
    r = check_error(
        client.post("/v1/binds", json=good(PhoneNoC="13812345678"), headers=auth),
        422,
        "isv.INVALID_PARAMETERS",
    )
    assert r["Problems"][0]["field"] == "PhoneNoC" and "not a parameter" in r["Problems"][0]["reason"]
    check_error(client.post("/v1/binds", json=[good()], headers=auth), 422, "isv.INVALID_PARAMETERS")
    check_error(
        client.post("/v1/binds:batch", json={"items": "x"}, headers=auth), 422, "isv.INVALID_PARAMETERS"
    )
    check_error(
        client.post("/v1/binds:batch", json={"items": []}, headers=auth), 422, "isv.INVALID_PARAMETERS"
    )
    r = check_error(client.post("/v1/binds/k/extend", json={}, headers=auth), 422, "isv.INVALID_PARAMETERS")
    assert r["Problems"][0]["field"] == "Expiration"


def test_a_bad_idempotency_key_or_callback_url_is_422(client: httpx.Client, auth: dict[str, str]) -> None:
    """An over-long key, a reserved prefix, a non-http callback: 422 with the field named."""
    r = check_error(
        client.post("/v1/binds", json=good(), headers={**auth, "Idempotency-Key": "k" * 201}),
        422,
        "isv.INVALID_PARAMETERS",
    )
    assert r["Problems"][0]["field"] == "Idempotency-Key"
    r = check_error(
        client.post("/v1/binds", json=good(), headers={**auth, "Idempotency-Key": "unbind:x"}),
        422,
        "isv.INVALID_PARAMETERS",
    )
    assert r["Problems"][0]["field"] == "IdempotencyKey"
    r = check_error(
        client.post("/v1/binds", json=good(CallbackUrl="ftp://x.example/cb"), headers=auth),
        422,
        "axb.CALLBACK_URL_REFUSED",
    )
    assert r["Problems"][0]["field"] == "CallbackUrl"


def test_a_huge_body_is_413_before_it_is_read_whole(client: httpx.Client, auth: dict[str, str]) -> None:
    """Over AXB_API_MAX_BODY_BYTES (100 kB here): 413, declared or streamed without a length."""
    big = json.dumps({"items": [good(OutId=f"t{i}") for i in range(1000)]}).encode()
    check_error(
        client.post("/v1/binds:batch", content=big, headers={**auth, "Content-Type": "application/json"}),
        413,
        "axb.BODY_TOO_LARGE",
    )

    def chunks() -> Any:
        for i in range(0, len(big), 10_000):
            yield big[i : i + 10_000]

    streamed = client.post(
        "/v1/binds:batch", content=chunks(), headers={**auth, "Content-Type": "application/json"}
    )
    check_error(streamed, 413, "axb.BODY_TOO_LARGE")


def test_a_bad_wait_or_a_bad_key_in_the_path_is_422(client: httpx.Client, auth: dict[str, str]) -> None:
    """wait=-1, 31, abc, nan: 422 naming `wait`; a 241-character or control-character key: 422 (`key`)."""
    for wait in ("-1", "31", "abc", "nan", "inf"):
        r = check_error(
            client.get("/v1/binds/k", params={"wait": wait}, headers=auth), 422, "isv.INVALID_PARAMETERS"
        )
        assert r["Problems"][0]["field"] == "wait", wait
    r = check_error(client.get("/v1/binds/" + "k" * 241, headers=auth), 422, "isv.INVALID_PARAMETERS")
    assert r["Problems"][0]["field"] == "key"
    check_error(client.get("/v1/binds/a%01b", headers=auth), 422, "isv.INVALID_PARAMETERS")
    check_error(
        client.post("/v1/binds/" + "k" * 241 + "/unbind", headers=auth), 422, "isv.INVALID_PARAMETERS"
    )


def test_unknown_routes_and_methods_get_json_404_and_405(client: httpx.Client, auth: dict[str, str]) -> None:
    """No route: 404 axb.NOT_FOUND; a wrong method: 405 with Allow."""
    check_error(client.get("/v2/binds", headers=auth), 404, "axb.NOT_FOUND")
    r = client.delete("/v1/binds", headers=auth)
    check_error(r, 405, "axb.METHOD_NOT_ALLOWED")
    assert "POST" in r.headers["allow"]


def test_with_redis_unreachable_the_api_answers_503_with_retry_after(
    simulator_server: Any, redis_url: str
) -> None:
    """Redis down is the service's problem, not the client's: 503 axb.UNAVAILABLE, never 500."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = ApiProcess(api_env(dead, simulator_server.url, "axb.api.dead")).start()
    try:
        with httpx.Client(base_url=server.url, timeout=20) as c:
            assert c.get("/healthz").status_code == 200
            ready = c.get("/readyz")
            check_error(ready, 503, "axb.UNAVAILABLE")
            token = make_token(redis_url, "orders", "bind")  # a well-formed token; its store is down
            r = c.post("/v1/binds", json=good(), headers=bearer(token))
            check_error(r, 503, "axb.UNAVAILABLE")
            assert r.headers["retry-after"] == "1"
    finally:
        server.stop()


def test_the_committed_openapi_document_is_the_one_served(client: httpx.Client) -> None:
    """docs/openapi.json equals /openapi.json (rewrite it with `python -m worker.api.openapi`)."""
    served = client.get("/openapi.json").json()
    assert served["openapi"].startswith("3.1")
    assert json.loads(COMMITTED.read_text()) == served, "run: .venv/bin/python -m worker.api.openapi"
    assert COMMITTED.read_text() == text()
    assert set(served["paths"]) == {
        "/v1/binds",
        "/v1/binds:batch",
        "/v1/binds/{key}",
        "/v1/binds/{key}/unbind",
        "/v1/binds/{key}/extend",
        "/healthz",
        "/readyz",
    }


def test_the_api_takes_exactly_the_vendors_bind_parameters() -> None:
    """The HTTP body's parameter names are BindAxbRequest's (the vendor's), no more, no less."""
    assert bind_parameter_names() == model_parameter_names()
