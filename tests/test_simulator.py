"""The Dypls simulator behaves like the vendor: gateway, validation, pools, QPS, faults, ledger.

Most tests talk to the session's simulator over a real socket (the ``simulator`` fixture resets it
per test); a few use ``httpx.ASGITransport`` in process, and one runs ``run_simulator`` in a child
process. Requests are signed with ``worker.vendor``, never by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from tests.simulator_fixture import (
    TEST_ACCESS_KEY_ID as AK,
)
from tests.simulator_fixture import (
    TEST_ACCESS_KEY_SECRET as SECRET,
)
from tests.simulator_fixture import (
    RunningSimulator,
    fixture_config,
)
from tests.waiting import http_serving, wait_until
from worker.simulator import SimulatedConnectionReset, SimulatorConfig, create_app
from worker.simulator.state import FIRST_SUBS_ID
from worker.vendor import (
    API_VERSION,
    V3_ALGORITHM,
    SignedRequest,
    canonical_query,
    sign_request,
    utc_timestamp,
    v1_string_to_sign,
    v3_canonical_request,
    v3_signature,
    v3_string_to_sign,
)

ROOT = Path(__file__).resolve().parent.parent
POOL = "FC100000001"
REQUEST_ID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
Scheme = Literal["v1", "v3"]


def expiration(minutes: float = 60, now: datetime | None = None) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in China Standard Time, ``minutes`` after ``now``."""
    base = now or datetime.now(UTC)
    return (base.astimezone(UTC) + timedelta(hours=8, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def bind_params(i: int = 0, **over: str) -> dict[str, str]:
    params = {
        "PoolKey": POOL,
        "PhoneNoA": f"1380000{i:04d}",
        "PhoneNoB": f"1390000{i:04d}",
        "Expiration": expiration(),
        "OutId": f"order-{i}",
    }
    params.update(over)
    return {k: v for k, v in params.items() if v is not None}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def sign(
    sim: RunningSimulator,
    action: str,
    params: dict[str, str],
    *,
    scheme: Scheme = "v3",
    secret: str = SECRET,
    access_key_id: str = AK,
    nonce: str | None = None,
    now: datetime | None = None,
    method: str = "POST",
) -> SignedRequest:
    return sign_request(
        action,
        params,
        endpoint=sim.url,
        access_key_id=access_key_id,
        secret=secret,
        scheme=scheme,
        nonce=nonce,
        now=now,
        method=method,
    )


def send(client: httpx.Client, signed: SignedRequest) -> httpx.Response:
    return client.request(signed.method, signed.url, headers=signed.headers, content=signed.body or None)


def call(
    client: httpx.Client, sim: RunningSimulator, action: str, params: dict[str, str], **kw: Any
) -> httpx.Response:
    return send(client, sign(sim, action, params, **kw))


def bind(client: httpx.Client, sim: RunningSimulator, i: int = 0, **over: str) -> dict[str, Any]:
    response = call(client, sim, "BindAxb", bind_params(i, **over))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bound(client: httpx.Client, sim: RunningSimulator, i: int = 0, **over: str) -> dict[str, str]:
    body = bind(client, sim, i, **over)
    assert body["Code"] == "OK", body
    dto: dict[str, str] = body["SecretBindDTO"]
    return dto


def unbind(client: httpx.Client, sim: RunningSimulator, dto: dict[str, str]) -> dict[str, Any]:
    params = {"PoolKey": POOL, "SecretNo": dto["SecretNo"], "SubsId": dto["SubsId"]}
    body: dict[str, Any] = call(client, sim, "UnbindSubscription", params).json()
    return body


def query(client: httpx.Client, sim: RunningSimulator, dto: dict[str, str]) -> dict[str, Any]:
    params = {"PoolKey": POOL, "PhoneNoX": dto["SecretNo"], "SubsId": dto["SubsId"]}
    body: dict[str, Any] = call(client, sim, "QuerySubscriptionDetail", params).json()
    return body


def signed_v3_with_form(
    sim: RunningSimulator, action: str, query_params: dict[str, str], form: dict[str, str]
) -> tuple[str, dict[str, str], bytes]:
    """A v3 request with a form body, built from the ``worker.vendor`` primitives."""
    body = urlencode(form).encode()
    headers = {
        "host": urlsplit(sim.url).netloc,
        "x-acs-action": action,
        "x-acs-version": API_VERSION,
        "x-acs-date": utc_timestamp(),
        "x-acs-signature-nonce": f"form-{time.monotonic_ns()}",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "content-type": "application/x-www-form-urlencoded",
    }
    canonical, names = v3_canonical_request(
        "POST", "/", query_params, headers, headers["x-acs-content-sha256"]
    )
    signature = v3_signature(v3_string_to_sign(canonical), SECRET)
    headers["authorization"] = f"{V3_ALGORITHM} Credential={AK},SignedHeaders={names},Signature={signature}"
    url = f"{sim.url}/?{canonical_query(query_params)}" if query_params else f"{sim.url}/"
    return url, headers, body


def assert_gateway_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert body["Code"] == code and REQUEST_ID.match(body["RequestId"])
    return body


# --- the gateway: signatures, keys, timestamps, nonces -------------------------------------------


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_a_correctly_signed_bind_succeeds_in_either_signature_style(
    http: httpx.Client, simulator: RunningSimulator, scheme: Scheme
) -> None:
    """Both v1 and v3 requests signed by worker.vendor bind and return a SecretBindDTO."""
    body = call(http, simulator, "BindAxb", bind_params(1), scheme=scheme).json()
    assert body["Code"] == "OK" and body["Message"] == "OK" and REQUEST_ID.match(body["RequestId"])
    dto = body["SecretBindDTO"]
    assert dto == {"SecretNo": "17100000000", "SubsId": dto["SubsId"], "Extension": ""}
    assert re.fullmatch(r"\d{16}", dto["SubsId"])
    assert simulator.calls()[0]["scheme"] == scheme


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_get_requests_are_accepted_and_signed_with_get(
    http: httpx.Client, simulator: RunningSimulator, scheme: Scheme
) -> None:
    """The method is part of what is signed; GET works as well as POST."""
    body = call(http, simulator, "BindAxb", bind_params(2), scheme=scheme, method="GET").json()
    assert body["Code"] == "OK"


def test_v1_parameters_may_travel_in_a_form_body(http: httpx.Client, simulator: RunningSimulator) -> None:
    """The signature covers query and form parameters alike, wherever they travel."""
    signed = sign(simulator, "BindAxb", bind_params(3), scheme="v1")
    parts = urlsplit(signed.url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    in_body = {k: v for k, v in pairs if k in ("PhoneNoA", "PhoneNoB", "Expiration")}
    in_query = [(k, v) for k, v in pairs if k not in in_body]
    response = http.post(
        f"{simulator.url}/?{urlencode(in_query)}",
        content=urlencode(in_body).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.json()["Code"] == "OK"
    assert simulator.calls()[0]["params"]["PhoneNoA"] == "13800000003"


def test_v3_form_bodies_are_hashed_and_their_hash_is_checked(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """A v3 form body counts when its SHA-256 matches; a body changed after signing is refused."""
    params = bind_params(4)
    form = {k: params.pop(k) for k in ("PhoneNoA", "PhoneNoB")}
    url, headers, body = signed_v3_with_form(simulator, "BindAxb", params, form)
    assert http.post(url, headers=headers, content=body).json()["Code"] == "OK"

    url, headers, body = signed_v3_with_form(simulator, "BindAxb", params, form)
    tampered = body.replace(b"13800000004", b"13800000005")
    assert_gateway_error(http.post(url, headers=headers, content=tampered), 400, "SignatureDoesNotMatch")
    assert len(simulator.bindings()) == 1


def test_a_tampered_v1_request_is_refused_with_the_server_string_to_sign(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """Changing a signed value: HTTP 400 SignatureDoesNotMatch, message ending with the server's string."""
    signed = sign(simulator, "BindAxb", bind_params(5), scheme="v1")
    tampered_url = signed.url.replace("13900000005", "13900000006")
    response = http.post(tampered_url, headers=signed.headers)
    body = assert_gateway_error(response, 400, "SignatureDoesNotMatch")
    prefix = "Specified signature is not matched with our calculation. server string to sign is:"
    assert body["Message"].startswith(prefix)
    params = dict(parse_qsl(urlsplit(tampered_url).query, keep_blank_values=True))
    params.pop("Signature")
    assert body["Message"][len(prefix) :] == v1_string_to_sign("POST", params)
    # aliyunsdkcore compares its own string with message.split(":")[1]: there must be no other colon.
    assert body["Message"].split(":")[1] == v1_string_to_sign("POST", params)
    assert simulator.bindings() == []


def test_a_tampered_or_wrongly_keyed_v3_request_is_refused(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """v3: a changed query or a wrong secret gives SignatureDoesNotMatch with the v3 string to sign."""
    signed = sign(simulator, "BindAxb", bind_params(6))
    response = http.post(signed.url.replace("13900000006", "13900000007"), headers=signed.headers)
    body = assert_gateway_error(response, 400, "SignatureDoesNotMatch")
    assert re.search(r"server string to sign is:ACS3-HMAC-SHA256\n[0-9a-f]{64}$", body["Message"])
    response = call(http, simulator, "BindAxb", bind_params(6), secret="not-the-secret")
    assert_gateway_error(response, 400, "SignatureDoesNotMatch")
    assert simulator.bindings() == []


def test_an_unsigned_acs_header_is_refused(http: httpx.Client, simulator: RunningSimulator) -> None:
    """v3 requests must sign host and the x-acs-* headers the gateway relies on."""
    params = bind_params(7)
    headers = {
        "host": urlsplit(simulator.url).netloc,
        "x-acs-action": "BindAxb",
        "x-acs-version": API_VERSION,
        "x-acs-date": utc_timestamp(),
    }
    canonical, names = v3_canonical_request("POST", "/", params, headers, hashlib.sha256(b"").hexdigest())
    signature = v3_signature(v3_string_to_sign(canonical), SECRET)
    headers["authorization"] = f"{V3_ALGORITHM} Credential={AK},SignedHeaders={names},Signature={signature}"
    headers["x-acs-signature-nonce"] = "unsigned-nonce"
    response = http.post(f"{simulator.url}/?{canonical_query(params)}", headers=headers)
    assert_gateway_error(response, 400, "IncompleteSignature")


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_an_unknown_access_key_id_is_refused_with_404(
    http: httpx.Client, simulator: RunningSimulator, scheme: Scheme
) -> None:
    """An AccessKeyId the account does not have: HTTP 404 InvalidAccessKeyId.NotFound."""
    response = call(http, simulator, "BindAxb", bind_params(8), scheme=scheme, access_key_id="LTAIunknown")
    body = assert_gateway_error(response, 404, "InvalidAccessKeyId.NotFound")
    assert body["HostId"] == "dyplsapi.aliyuncs.com" and "InvalidAccessKeyId.NotFound" in body["Recommend"]
    assert simulator.calls()[0]["code"] == "InvalidAccessKeyId.NotFound"


def test_extra_keys_share_the_account_and_inactive_keys_are_refused(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """A second key of the account works; a disabled key gets InvalidAccessKeyId.Inactive."""
    simulator.reset(
        fixture_config(extra_credentials={"second": "s2", "off": "s3"}, inactive_access_key_ids=("off",))
    )
    ok = call(http, simulator, "BindAxb", bind_params(9), access_key_id="second", secret="s2")
    assert ok.json()["Code"] == "OK"
    refused = call(http, simulator, "BindAxb", bind_params(10), access_key_id="off", secret="s3")
    assert_gateway_error(refused, 400, "InvalidAccessKeyId.Inactive")


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_a_timestamp_more_than_15_minutes_off_is_refused(
    http: httpx.Client, simulator: RunningSimulator, scheme: Scheme
) -> None:
    """16 minutes behind or ahead: InvalidTimeStamp.Expired; 14 minutes behind still passes."""
    now = datetime.now(UTC)
    for skew in (-16, 16):
        stale = call(
            http, simulator, "BindAxb", bind_params(11), scheme=scheme, now=now + timedelta(minutes=skew)
        )
        assert_gateway_error(stale, 400, "InvalidTimeStamp.Expired")
    fine = call(http, simulator, "BindAxb", bind_params(11), scheme=scheme, now=now - timedelta(minutes=14))
    assert fine.json()["Code"] == "OK"


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_a_nonce_seen_before_is_refused_and_nothing_is_bound_twice(
    http: httpx.Client, simulator: RunningSimulator, scheme: Scheme
) -> None:
    """The same signed request sent twice: OK, then SignatureNonceUsed; one binding."""
    signed = sign(simulator, "BindAxb", bind_params(12), scheme=scheme)
    assert send(http, signed).json()["Code"] == "OK"
    assert_gateway_error(send(http, signed), 400, "SignatureNonceUsed")
    assert len(simulator.bindings()) == 1
    assert [c["nonce"] for c in simulator.calls()] == [signed.nonce, signed.nonce]


def test_the_nonce_is_recorded_at_receipt_before_the_call_is_processed(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """A replay that arrives while the first copy is still in flight gets SignatureNonceUsed."""
    simulator.set_faults(latency_ms=400)
    signed = sign(simulator, "BindAxb", bind_params(13))
    first: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: first.append(send(http, signed)))
    thread.start()
    wait_until(simulator.calls, timeout=5, interval=0.005)  # the first copy is in its latency
    assert_gateway_error(send(http, signed), 400, "SignatureNonceUsed")
    assert not first  # refused while the first copy was still being processed
    thread.join(5)
    assert first[0].json()["Code"] == "OK"
    assert len(simulator.bindings()) == 1


def test_a_nonce_is_per_access_key_and_forgotten_after_15_minutes(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """The nonce window is per key, and a nonce may come back once its 15 minutes are over."""
    simulator.reset(fixture_config(extra_credentials={"second": "s2"}, nonce_ttl_s=0.2))
    assert call(http, simulator, "BindAxb", bind_params(14), nonce="n-1").json()["Code"] == "OK"
    other_key = call(
        http, simulator, "BindAxb", bind_params(15), nonce="n-1", access_key_id="second", secret="s2"
    )
    assert other_key.json()["Code"] == "OK"
    # Refused (SignatureNonceUsed) while the nonce is remembered, accepted once its window is over.
    wait_until(
        lambda: call(http, simulator, "BindAxb", bind_params(16), nonce="n-1").json()["Code"] == "OK",
        timeout=5,
    )
    assert len(simulator.bindings()) == 3


def test_an_unknown_action_or_version_is_refused(http: httpx.Client, simulator: RunningSimulator) -> None:
    """Actions the simulator does not serve: 404 InvalidAction.NotFound; another version: InvalidVersion."""
    assert_gateway_error(call(http, simulator, "BindAxn", bind_params(17)), 404, "InvalidAction.NotFound")
    signed = sign_request(
        "BindAxb",
        bind_params(17),
        endpoint=simulator.url,
        access_key_id=AK,
        secret=SECRET,
        version="2020-01-01",
    )
    assert_gateway_error(send(http, signed), 400, "InvalidVersion")


def test_a_request_without_signature_pieces_is_refused(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """A v1 request missing its SignatureNonce: MissingSignatureNonce, recorded in the ledger."""
    signed = sign(simulator, "BindAxb", bind_params(18), scheme="v1")
    pairs = [(k, v) for k, v in parse_qsl(urlsplit(signed.url).query) if k != "SignatureNonce"]
    response = http.post(f"{simulator.url}/?{urlencode(pairs)}")
    assert_gateway_error(response, 400, "MissingSignatureNonce")
    assert simulator.calls()[0]["out_id"] == "order-18"


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"PhoneNoA": "+8613800000001"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"PhoneNoA": "8613800000001"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"PhoneNoB": "1380000000"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"PhoneNoB": "138-0000-0001"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"PhoneNoA": "12800000001"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"PhoneNoA": "0571-88992688"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"PhoneNoX": "1710000"}, "isv.MOBILE_NUMBER_ILLEGAL"),
        ({"PhoneNoA": "13900000000", "PhoneNoB": "13900000000"}, "isv.INVALID_PARAMETERS"),
        ({"PoolKey": ""}, "isv.INVALID_PARAMETERS"),
        ({"PhoneNoB": ""}, "isv.INVALID_PARAMETERS"),
        ({"Expiration": ""}, "isv.INVALID_PARAMETERS"),
        ({"Expiration": "2099/01/01 00:00:00"}, "isv.EXPIRE_DATE_ILLEGAL"),
        ({"Expiration": "2099-02-30 00:00:00"}, "isv.EXPIRE_DATE_ILLEGAL"),
        ({"Expiration": "2099-01-01T00:00:00"}, "isv.EXPIRE_DATE_ILLEGAL"),
        ({"PoolKey": "FC999999999"}, "isv.POOLKEY_NOT_EXISTS"),
        ({"CallRestrict": "CONTROL_XX_DISABLE"}, "isv.INVALID_PARAMETERS"),
        ({"IsRecordingEnabled": "yes"}, "isv.INVALID_PARAMETERS"),
        ({"ASRStatus": "1"}, "isv.INVALID_PARAMETERS"),
        ({"CallTimeout": "181"}, "isv.INVALID_PARAMETERS"),
        ({"CallTimeout": "ten"}, "isv.INVALID_PARAMETERS"),
        ({"CallDisplayType": "2"}, "isv.INVALID_PARAMETERS"),
        ({"RingConfig": "{not json"}, "isv.INVALID_PARAMETERS"),
    ],
)
def test_invalid_bind_parameters_get_the_vendor_codes(
    http: httpx.Client, simulator: RunningSimulator, over: dict[str, str], code: str
) -> None:
    """Each illegal parameter is answered HTTP 200 with the vendor's business code, and binds nothing."""
    body = bind(http, simulator, 20, **over)
    assert body["Code"] == code and "SecretBindDTO" not in body and REQUEST_ID.match(body["RequestId"])
    assert simulator.bindings() == []


@pytest.mark.parametrize(
    "over",
    [
        {"PhoneNoA": "057188992688", "PhoneNoB": "01088992688"},
        {"IsRecordingEnabled": "true", "ASRStatus": "False"},
        {"IsRecordingEnabled": "True", "ASRStatus": "false"},
        {"CallRestrict": "CONTROL_AX_DISABLE", "CallTimeout": "0", "CallDisplayType": "1"},
        {"CallRestrict": "CONTROL_BX_DISABLE", "CallTimeout": "180"},
        {"RingConfig": '{"AXBRing": "123"}', "DtmfConfig": "{}", "ExpectCity": "北京", "OutOrderId": "o"},
        {"ResourceOwnerId": "1", "OwnerId": "2"},
    ],
)
def test_valid_optional_parameters_are_accepted(
    http: httpx.Client, simulator: RunningSimulator, over: dict[str, str]
) -> None:
    """Landlines, both boolean spellings, the CallRestrict values and unknown extras all bind."""
    assert bind(http, simulator, 21, **over)["Code"] == "OK"


def test_expiration_is_china_standard_time_and_must_be_more_than_a_minute_ahead(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """30 s ahead (UTC+8) is refused with the vendor's message; a UTC wall time is past; 2 min binds."""
    body = bind(http, simulator, 22, Expiration=expiration(minutes=0.5))
    assert body["Code"] == "isv.EXPIRE_DATE_ILLEGAL"
    assert body["Message"] == "expireDate less than 1 minutes from now"
    utc_wall_time = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert bind(http, simulator, 22, Expiration=utc_wall_time)["Code"] == "isv.EXPIRE_DATE_ILLEGAL"
    assert bind(http, simulator, 22, Expiration=expiration(minutes=2))["Code"] == "OK"


# --- number pools ----------------------------------------------------------------------------------


def test_an_x_never_carries_two_live_bindings_that_share_a_number(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """Same A, same B, or A of one as B of another: each lands on a different X."""
    first = bound(http, simulator, 30, PhoneNoA="13800000001", PhoneNoB="13900000001")
    same_a = bound(http, simulator, 31, PhoneNoA="13800000001", PhoneNoB="13900000002")
    same_b = bound(http, simulator, 32, PhoneNoA="13800000003", PhoneNoB="13900000001")
    crossed = bound(http, simulator, 33, PhoneNoA="13900000001", PhoneNoB="13800000009")
    unrelated = bound(http, simulator, 34, PhoneNoA="13800000005", PhoneNoB="13900000005")
    # X0 carries 01/01; same_a cannot go there; same_b shares B with X0 but not with X1; crossed
    # (B of the first as its A) is on X0 and X1 already, so X2.
    assert [d["SecretNo"] for d in (first, same_a, same_b, crossed)] == [
        "17100000000",
        "17100000001",
        "17100000001",
        "17100000002",
    ]
    assert unrelated["SecretNo"] == "17100000000"  # different numbers share an X freely
    subs_ids = {d["SubsId"] for d in (first, same_a, same_b, crossed, unrelated)}
    assert len(subs_ids) == 5 and all(len(s) == 16 and s.isdigit() for s in subs_ids)


def test_a_requested_phone_no_x_is_honoured_or_refused_with_the_right_code(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """PhoneNoX binds there; unknown → NO_NOT_EXIST; shared A/B → BIND_CONFLICT; full → NO_AVAILABLE."""
    simulator.reset(fixture_config(pool_size=3, max_pairs_per_x=2))
    assert bound(http, simulator, 40, PhoneNoX="17100000002")["SecretNo"] == "17100000002"
    assert bind(http, simulator, 41, PhoneNoX="17200000000")["Code"] == "isv.NO_NOT_EXIST"
    conflict = bind(http, simulator, 42, PhoneNoX="17100000002", PhoneNoA="13800000040")
    assert conflict["Code"] == "isv.BIND_CONFLICT"
    assert bound(http, simulator, 43, PhoneNoX="17100000002")["SecretNo"] == "17100000002"
    assert bind(http, simulator, 44, PhoneNoX="17100000002")["Code"] == "isv.NO_AVAILABLE_NUMBER"


def test_an_exhausted_pool_answers_no_available_number_until_an_unbind_frees_one(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """2 X x 2 pairs: the fifth bind is refused; unbinding one makes room for exactly one more."""
    simulator.reset(fixture_config(pool_size=2, max_pairs_per_x=2))
    dtos = [bound(http, simulator, 50 + i) for i in range(4)]
    assert sorted(d["SecretNo"] for d in dtos) == ["17100000000"] * 2 + ["17100000001"] * 2
    refused = bind(http, simulator, 54)
    assert refused["Code"] == "isv.NO_AVAILABLE_NUMBER" and "SecretBindDTO" not in refused
    assert unbind(http, simulator, dtos[3])["Code"] == "OK"
    assert bound(http, simulator, 54)["SecretNo"] == dtos[3]["SecretNo"]
    assert bind(http, simulator, 55)["Code"] == "isv.NO_AVAILABLE_NUMBER"
    assert simulator.sim.live_binding_count() == 4


def test_a_number_bound_on_every_x_gets_no_available_number_although_there_is_room(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """With A already on all three X numbers, a fourth bind for A cannot be placed."""
    simulator.reset(fixture_config(pool_size=3))
    for i in range(3):
        bound(http, simulator, 60 + i, PhoneNoA="13700000000")
    assert bind(http, simulator, 63, PhoneNoA="13700000000")["Code"] == "isv.NO_AVAILABLE_NUMBER"
    assert bound(http, simulator, 63)["SecretNo"] == "17100000000"


def test_unbinding_twice_or_with_the_wrong_x_answers_subs_not_exist(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """An unbind frees the binding once; after that, or with another SecretNo, isv.SUBS_NOT_EXIST."""
    dto = bound(http, simulator, 70)
    wrong_x = {**dto, "SecretNo": "17100000999"}
    assert unbind(http, simulator, wrong_x)["Code"] == "isv.SUBS_NOT_EXIST"
    assert unbind(http, simulator, dto)["Code"] == "OK"
    assert unbind(http, simulator, dto)["Code"] == "isv.SUBS_NOT_EXIST"
    missing = call(http, simulator, "UnbindSubscription", {"PoolKey": POOL, "SubsId": dto["SubsId"]})
    assert missing.json()["Code"] == "isv.INVALID_PARAMETERS"
    (binding,) = simulator.bindings()
    assert binding["status"] == "unbound" and binding["ended_at"]


def test_expiry_frees_the_number_on_the_injected_clock(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """One X, one pair: a binding that expires (clock moved on) frees X and reads back as Status 0."""
    simulator.reset(fixture_config(pool_size=1, max_pairs_per_x=1))
    dto = bound(http, simulator, 80, Expiration=expiration(minutes=5))
    assert bind(http, simulator, 81)["Code"] == "isv.NO_AVAILABLE_NUMBER"
    assert query(http, simulator, dto)["SecretBindDetailDTO"]["Status"] == 1
    simulator.sim.advance_clock(6 * 60)
    assert query(http, simulator, dto)["SecretBindDetailDTO"]["Status"] == 0
    later = simulator.sim.now()
    assert (
        bound(http, simulator, 81, Expiration=expiration(minutes=5, now=later))["SecretNo"] == dto["SecretNo"]
    )
    statuses = {b["subs_id"]: b["status"] for b in simulator.bindings()}
    assert statuses[dto["SubsId"]] == "expired"
    assert simulator.ledger()["live_bindings"] == 1


def test_a_clock_from_the_config_drives_expiration_checks(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """config.clock set a day ahead: an Expiration one hour from real time is already past."""
    simulator.reset(fixture_config(clock=lambda: datetime.now(UTC) + timedelta(days=1)))
    assert bind(http, simulator, 82)["Code"] == "isv.EXPIRE_DATE_ILLEGAL"
    tomorrow = simulator.sim.now()
    assert bind(http, simulator, 82, Expiration=expiration(minutes=60, now=tomorrow))["Code"] == "OK"


def test_query_subscription_detail_returns_the_binding(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """SecretBindDetailDTO carries the numbers, Status, ExpireDate, GmtCreate, NeedRecord, SubsId."""
    exp = expiration(minutes=90)
    dto = bound(
        http, simulator, 90, Expiration=exp, IsRecordingEnabled="true", CallRestrict="CONTROL_AX_DISABLE"
    )
    detail = query(http, simulator, dto)["SecretBindDetailDTO"]
    assert detail["SubsId"] == dto["SubsId"] and detail["PhoneNoX"] == dto["SecretNo"]
    assert (detail["PhoneNoA"], detail["PhoneNoB"]) == ("13800000090", "13900000090")
    assert detail["Status"] == 1 and detail["ExpireDate"] == exp and detail["NeedRecord"] is True
    assert detail["CallRestrict"] == "CONTROL_AX_DISABLE"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", detail["GmtCreate"])
    wrong_x = {**dto, "SecretNo": "17100000999"}
    assert query(http, simulator, wrong_x)["Code"] == "isv.SUBS_NOT_EXIST"
    no_x = call(http, simulator, "QuerySubscriptionDetail", {"PoolKey": POOL, "SubsId": dto["SubsId"]})
    assert no_x.json()["Code"] == "isv.INVALID_PARAMETERS"


def test_update_subscription_changes_expiry_and_numbers_with_the_pool_rules(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """updateExpire moves ExpireDate (validated); updateNoA keeps the X sharing rule; unknown ops fail."""
    dto = bound(http, simulator, 100)
    other = bound(http, simulator, 101)
    assert other["SecretNo"] == dto["SecretNo"]
    base = {"PoolKey": POOL, "SubsId": dto["SubsId"], "PhoneNoX": dto["SecretNo"]}

    def update(**params: str) -> str:
        code: str = call(http, simulator, "UpdateSubscription", {**base, **params}).json()["Code"]
        return code

    new_exp = expiration(minutes=600)
    assert update(OperateType="updateExpire", Expiration=new_exp) == "OK"
    assert query(http, simulator, dto)["SecretBindDetailDTO"]["ExpireDate"] == new_exp
    assert update(OperateType="updateExpire", Expiration=expiration(minutes=0.5)) == "isv.EXPIRE_DATE_ILLEGAL"
    assert update(OperateType="updateExpire") == "isv.INVALID_PARAMETERS"
    assert update(OperateType="updateNoA", PhoneNoA="13800000101") == "isv.BIND_CONFLICT"
    assert update(OperateType="updateNoA", PhoneNoA="+8613800000102") == "isv.MOBILE_NUMBER_ILLEGAL"
    assert update(OperateType="updateNoA", PhoneNoA="13800000102") == "OK"
    assert query(http, simulator, dto)["SecretBindDetailDTO"]["PhoneNoA"] == "13800000102"
    assert update(OperateType="updateIsRecordingEnabled", IsRecordingEnabled="True") == "OK"
    assert update(OperateType="updateCallRestrict", CallRestrict="CONTROL_BX_DISABLE") == "OK"
    assert update(OperateType="updateOutId", OutId="renamed") == "OK"
    assert update(OperateType="updateEverything") == "isv.INVALID_PARAMETERS"
    detail = query(http, simulator, dto)["SecretBindDetailDTO"]
    assert detail["NeedRecord"] is True and detail["CallRestrict"] == "CONTROL_BX_DISABLE"
    # The old A is free again on that X; the new one is taken.
    assert bound(http, simulator, 102, PhoneNoA="13800000100", PhoneNoX=dto["SecretNo"])
    assert unbind(http, simulator, dto)["Code"] == "OK"
    assert update(OperateType="updateExpire", Expiration=new_exp) == "isv.SUBS_NOT_EXIST"


def test_subs_ids_are_never_reused_not_even_across_resets(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """SubsIds are 16-digit, increasing and unique for the simulator's lifetime."""
    first = bound(http, simulator, 110)["SubsId"]
    simulator.reset()
    second = bound(http, simulator, 110)["SubsId"]
    assert int(second) > int(first) >= FIRST_SUBS_ID


# --- QPS limit -------------------------------------------------------------------------------------


def by_second(calls: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for c in calls:
        groups[int(c["time"])].append(c)
    return groups


def test_calls_above_the_qps_limit_in_a_second_get_flow_limit(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """Limit 3/s across all actions: in every wall-clock second the 4th call on gets isv.FLOW_LIMIT."""
    simulator.set_faults(qps_limit=3)
    dto = bound(http, simulator, 120)
    for i in range(8):
        if i % 3 == 0:
            query(http, simulator, dto)
        else:
            bind(http, simulator, 121 + i)
    ledger = simulator.ledger()
    throttled = 0
    for second, calls in by_second(ledger["calls"]).items():
        codes = [c["code"] for c in calls]
        assert "isv.FLOW_LIMIT" not in codes[:3]
        assert codes[3:] == ["isv.FLOW_LIMIT"] * len(codes[3:])
        assert all(c["http_status"] == 200 for c in calls)
        throttled += len(codes[3:])
        assert ledger["calls_per_second"][second] == min(3, len(calls))
        assert ledger["throttled_per_second"].get(second, 0) == len(codes[3:])
    assert throttled >= 3
    assert all(c["fault"] == "throttled" for c in ledger["calls"] if c["code"] == "isv.FLOW_LIMIT")


def test_the_gateway_throttle_style_answers_throttling_user_with_retry_after(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """throttle_style="gateway": HTTP 400 Throttling.User, with x-acs-retry-after when configured."""
    simulator.set_faults(qps_limit=0, throttle_style="gateway", throttle_retry_after_ms=1500)
    response = call(http, simulator, "BindAxb", bind_params(130))
    assert_gateway_error(response, 400, "Throttling.User")
    assert response.headers["x-acs-retry-after"] == "1500"
    assert simulator.bindings() == [] and simulator.calls()[0]["code"] == "Throttling.User"


# --- faults ------------------------------------------------------------------------------------------


def test_a_forced_code_answers_the_next_n_bind_calls_then_stops(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """force_code + force_count=2: two isp.SYSTEM_ERROR answers, no binding for them, then OK."""
    simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=2)
    codes = [bind(http, simulator, 140)["Code"] for _ in range(3)]
    assert codes == ["isp.SYSTEM_ERROR", "isp.SYSTEM_ERROR", "OK"]
    assert len(simulator.bindings_for("order-140")) == 1
    assert simulator.sim.faults.force_code is None
    assert [c["fault"] for c in simulator.calls()] == ["force_code", "force_code", None]


def test_a_forced_code_without_a_count_lasts_and_gateway_codes_keep_their_status(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """force_code alone hits every BindAxb until cleared; gateway codes come with their HTTP status."""
    simulator.set_faults(force_code="isv.ACCOUNT_ABNORMAL")
    assert [bind(http, simulator, 141)["Code"] for _ in range(3)] == ["isv.ACCOUNT_ABNORMAL"] * 3
    simulator.set_faults(force_code="ServiceUnavailable")
    assert_gateway_error(call(http, simulator, "BindAxb", bind_params(141)), 503, "ServiceUnavailable")
    simulator.set_faults(force_code="Throttling.User", throttle_retry_after_ms=300)
    throttled = call(http, simulator, "BindAxb", bind_params(141))
    assert_gateway_error(throttled, 400, "Throttling.User")
    assert throttled.headers["x-acs-retry-after"] == "300"
    simulator.set_faults(force_code=None)
    assert bind(http, simulator, 141)["Code"] == "OK"


def test_transient_codes_at_error_rate_are_drawn_from_error_codes_reproducibly(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """error_rate=0.5 with a seed: some calls get one of error_codes, the same ones for the same seed."""

    def run() -> list[str]:
        simulator.reset(
            fixture_config(seed=7, error_rate=0.5, error_codes=("isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR"))
        )
        return [bind(http, simulator, 150 + i)["Code"] for i in range(20)]

    codes = run()
    assert set(codes) == {"OK", "isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR"}
    assert run() == codes
    assert len(simulator.bindings()) == codes.count("OK")


def test_faults_hit_only_bind_axb_unless_configured(http: httpx.Client, simulator: RunningSimulator) -> None:
    """error_rate=1 leaves queries and unbinds alone; with fault_actions including them, they fail too."""
    dto = bound(http, simulator, 160)
    simulator.set_faults(error_rate=1.0, error_codes=["isp.SYSTEM_ERROR"])
    assert bind(http, simulator, 161)["Code"] == "isp.SYSTEM_ERROR"
    assert query(http, simulator, dto)["Code"] == "OK"
    simulator.set_faults(fault_actions=["BindAxb", "UnbindSubscription"])
    assert unbind(http, simulator, dto)["Code"] == "isp.SYSTEM_ERROR"


def test_http_5xx_answers_carry_a_json_gateway_body_and_bind_nothing(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """http_5xx_rate=1: HTTP 500 InternalError or 503 ServiceUnavailable, JSON, no binding."""
    simulator.set_faults(http_5xx_rate=1.0)
    seen = set()
    for _ in range(12):
        response = call(http, simulator, "BindAxb", bind_params(170))
        expected = {500: "InternalError", 503: "ServiceUnavailable"}[response.status_code]
        assert_gateway_error(response, response.status_code, expected)
        seen.add(response.status_code)
    assert seen == {500, 503}
    assert simulator.bindings() == []


def test_an_html_502_page_is_not_json(http: httpx.Client, simulator: RunningSimulator) -> None:
    """html_502_rate=1: a 502 HTML page from the load balancer; the ledger notes the fault."""
    simulator.set_faults(html_502_rate=1.0)
    response = call(http, simulator, "BindAxb", bind_params(180))
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in response.text
    with pytest.raises(ValueError):
        response.json()
    (entry,) = simulator.calls()
    assert entry["fault"] == "html_502" and entry["http_status"] == 502 and entry["code"] is None


def test_a_slow_answer_comes_after_the_bind_was_applied(simulator: RunningSimulator) -> None:
    """slow_rate=1: the client times out, yet the binding exists; the replay gets SignatureNonceUsed."""
    simulator.set_faults(slow_response_ms=600, slow_rate=1.0)
    signed = sign(simulator, "BindAxb", bind_params(190))
    with httpx.Client(timeout=httpx.Timeout(5, read=0.15)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            send(impatient, signed)
        assert len(simulator.bindings_for("order-190")) == 1
        simulator.set_faults(slow_rate=0.0)
        assert_gateway_error(send(impatient, signed), 400, "SignatureNonceUsed")
    first = simulator.calls()[0]
    assert first["code"] == "OK" and first["fault"] == "slow"


def test_a_connection_reset_comes_after_the_bind_was_applied(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """reset_rate=1: the client sees a transport error (RST), the vendor kept the binding."""
    simulator.set_faults(reset_rate=1.0)
    with pytest.raises(httpx.TransportError):
        call(http, simulator, "BindAxb", bind_params(200))
    assert len(simulator.bindings_for("order-200")) == 1
    simulator.set_faults(reset_rate=0.0)
    assert bind(http, simulator, 201)["Code"] == "OK"  # the server is fine afterwards
    assert simulator.calls()[0]["fault"] == "reset"


def test_truncated_json_comes_after_the_bind_was_applied(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """truncated_json_rate=1: HTTP 200 with half a JSON body; the binding exists."""
    simulator.set_faults(truncated_json_rate=1.0)
    response = call(http, simulator, "BindAxb", bind_params(210))
    assert response.status_code == 200 and response.text.startswith('{"RequestId"')
    with pytest.raises(ValueError):
        json.loads(response.content)
    assert len(simulator.bindings_for("order-210")) == 1


def test_ok_without_a_secret_bind_dto_still_binds(http: httpx.Client, simulator: RunningSimulator) -> None:
    """missing_dto_rate=1: Code OK but no SecretBindDTO; the ledger knows the SubsId."""
    simulator.set_faults(missing_dto_rate=1.0)
    body = bind(http, simulator, 220)
    assert body["Code"] == "OK" and "SecretBindDTO" not in body
    (entry,) = simulator.calls()
    assert entry["fault"] == "missing_dto" and entry["subs_id"] == simulator.bindings_for("order-220")[0]
    assert bind(http, simulator, 221, PhoneNoA="bad")["Code"] == "isv.MOBILE_NUMBER_ILLEGAL"
    assert simulator.calls()[1]["fault"] is None  # only OK answers lose their DTO


def test_latency_and_jitter_delay_bind_calls(http: httpx.Client, simulator: RunningSimulator) -> None:
    """latency_ms=300 ± 20 delays BindAxb by 280-320 ms; other actions are not delayed. (Only
    lower bounds on the delayed call: a busy machine adds time, it never takes any away.)"""
    dto = bound(http, simulator, 230)
    simulator.set_faults(latency_ms=300, jitter_ms=20)
    started = time.monotonic()
    bind(http, simulator, 231)
    bind_s = time.monotonic() - started
    assert bind_s >= 0.28
    started = time.monotonic()
    query(http, simulator, dto)
    assert time.monotonic() - started < 0.28  # a delayed query could not be this fast


def test_fault_settings_are_validated(simulator: RunningSimulator) -> None:
    """Unknown names and rates outside [0, 1] are refused; the faults stay as they were."""
    with pytest.raises(ValueError, match="unknown fault"):
        simulator.set_faults(error_ratio=0.5)
    with pytest.raises(ValueError, match="error_rate"):
        simulator.set_faults(error_rate=1.5)
    with pytest.raises(ValueError, match="fault_actions"):
        simulator.set_faults(fault_actions=["BindAxn"])
    assert simulator.sim.faults.error_rate == 0.0


# --- admin endpoints and the ledger ------------------------------------------------------------------


def test_faults_can_be_changed_over_http(http: httpx.Client, simulator: RunningSimulator) -> None:
    """POST /_simulator/faults changes some settings; GET shows them; bad input is a 400."""
    response = http.post(
        f"{simulator.url}/_simulator/faults", json={"force_code": "isv.FLOW_LIMIT", "force_count": 1}
    )
    assert response.status_code == 200 and response.json()["force_code"] == "isv.FLOW_LIMIT"
    assert http.get(f"{simulator.url}/_simulator/faults").json()["force_count"] == 1
    assert bind(http, simulator, 240)["Code"] == "isv.FLOW_LIMIT"
    assert http.post(f"{simulator.url}/_simulator/faults", json={"nope": 1}).status_code == 400
    assert http.post(f"{simulator.url}/_simulator/faults", json=[1]).status_code == 400
    cleared = http.post(f"{simulator.url}/_simulator/faults", json={"clear": True, "latency_ms": 5}).json()
    assert cleared["latency_ms"] == 5 and cleared["force_code"] is None


def test_the_ledger_records_every_call_with_its_outcome(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """Each call with time, action, scheme, nonce, OutId, code, status, SubsId; bindings per OutId; counts."""
    before = time.time()
    dto = bound(http, simulator, 250)
    call(http, simulator, "BindAxb", bind_params(251), secret="wrong")
    bind(http, simulator, 252, PhoneNoA="+8613800000252")
    unbind(http, simulator, dto)
    ledger = simulator.ledger()
    ok, refused, illegal, unbound = ledger["calls"]
    assert before <= ok["time"] <= time.time()
    assert (ok["action"], ok["code"], ok["http_status"], ok["out_id"]) == ("BindAxb", "OK", 200, "order-250")
    assert ok["subs_id"] == dto["SubsId"] and ok["secret_no"] == dto["SecretNo"] and ok["nonce"]
    assert REQUEST_ID.match(ok["request_id"]) and ok["scheme"] == "v3"
    assert (refused["code"], refused["http_status"], refused["out_id"]) == (
        "SignatureDoesNotMatch",
        400,
        "order-251",
    )
    assert (
        illegal["code"] == "isv.MOBILE_NUMBER_ILLEGAL" and illegal["params"]["PhoneNoA"] == "+8613800000252"
    )
    assert (unbound["action"], unbound["code"]) == ("UnbindSubscription", "OK")
    assert ledger["bindings_by_out_id"] == {"order-250": [dto["SubsId"]]}
    assert ledger["live_bindings"] == 0 and ledger["total_bindings"] == 1
    second = int(ok["time"])
    assert sum(ledger["calls_per_second"].values()) == 3  # the refused call never passed the gateway
    assert ledger["ok_binds_per_second"] == {second: 1}


def test_ledger_bindings_reset_and_clock_are_served_as_json(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """GET ledger/bindings, POST clock and reset: the admin API for other processes."""
    dto = bound(http, simulator, 260, Expiration=expiration(minutes=5))
    ledger = http.get(f"{simulator.url}/_simulator/ledger").json()
    assert ledger["bindings_by_out_id"] == {"order-260": [dto["SubsId"]]}
    assert list(ledger["ok_binds_per_second"].values()) == [1]
    bindings = http.get(f"{simulator.url}/_simulator/bindings").json()
    assert bindings["count"] == 1 and bindings["bindings"][0]["status"] == "active"
    assert http.post(f"{simulator.url}/_simulator/clock", json={"advance_s": 600}).status_code == 200
    assert http.get(f"{simulator.url}/_simulator/bindings?live=1").json()["count"] == 0
    assert http.get(f"{simulator.url}/_simulator/bindings").json()["bindings"][0]["status"] == "expired"
    assert http.post(f"{simulator.url}/_simulator/clock", json={"reset": True}).status_code == 200
    assert http.post(f"{simulator.url}/_simulator/reset").json() == {"reset": True}
    assert http.get(f"{simulator.url}/_simulator/ledger").json()["calls"] == []


def test_the_simulator_logs_no_raw_phone_numbers(
    http: httpx.Client, simulator: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Even at DEBUG, the simulator's own log lines mask the numbers of a call."""
    with caplog.at_level(logging.DEBUG, logger="worker.simulator"):
        bound(http, simulator, 270, OutId="13800000270")
        simulator.set_faults(error_rate=0.0)
    assert caplog.records
    assert "13800000270" not in caplog.text and "138****0270" in caplog.text


def test_a_call_waiting_during_a_reset_leaves_no_trace(
    http: httpx.Client, simulator: RunningSimulator
) -> None:
    """A bind still in its latency when the simulator resets is answered 503 and binds nothing."""
    simulator.set_faults(latency_ms=300)
    result: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: result.append(call(http, simulator, "BindAxb", bind_params(280)))
    )
    thread.start()
    wait_until(simulator.calls, timeout=5, interval=0.005)  # the bind is in its latency
    simulator.reset()
    thread.join(5)
    assert result[0].status_code == 503
    assert simulator.bindings() == [] and simulator.calls() == []


# --- in process, and the command line ---------------------------------------------------------------


def test_the_app_works_in_process_through_asgi_transport() -> None:
    """httpx.ASGITransport reaches the app without a socket; a reset fault raises SimulatedConnectionReset."""
    app = create_app(fixture_config())

    async def scenario() -> tuple[dict[str, Any], SimulatedConnectionReset | None]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simulator.test") as client:
            signed = sign_request(
                "BindAxb", bind_params(290), endpoint="http://simulator.test", access_key_id=AK, secret=SECRET
            )
            body = (await client.request(signed.method, signed.url, headers=signed.headers)).json()
            app.state.simulator.set_faults(reset_rate=1.0)
            signed = sign_request(
                "BindAxb", bind_params(291), endpoint="http://simulator.test", access_key_id=AK, secret=SECRET
            )
            try:
                await client.request(signed.method, signed.url, headers=signed.headers)
            except SimulatedConnectionReset as exc:
                return body, exc
            return body, None

    body, reset = asyncio.run(scenario())
    assert body["Code"] == "OK" and isinstance(reset, SimulatedConnectionReset)
    assert len(app.state.simulator.bindings()) == 2


def test_the_simulator_command_builds_the_config_from_its_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """`axb simulator --port 9 --latency-ms 20 ...` serves a SimulatorConfig with those values."""
    from worker.cli import main
    from worker.simulator import app as app_module

    served: list[tuple[SimulatorConfig, str, int]] = []
    monkeypatch.setattr(
        app_module, "serve", lambda config, host, port, **kw: served.append((config, host, port))
    )
    args = ["simulator", "--port", "9", "--latency-ms", "20", "--jitter-ms", "5", "--error-rate", "0.1"]
    args += ["--qps-limit", "50", "--seed", "7", "--pool-size", "10", "--throttle-style", "gateway"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ((config, host, port),) = served
    assert (host, port) == ("127.0.0.1", 9)
    assert (config.latency_ms, config.jitter_ms, config.error_rate) == (20, 5, 0.1)
    assert (config.qps_limit, config.seed, config.throttle_style) == (50, 7, "gateway")
    assert len(config.pool_numbers()["FC100000001"]) == 10
    bad = CliRunner().invoke(main, ["simulator", "--throttle-style", "loud"])
    assert bad.exit_code != 0


def test_run_simulator_serves_over_http_in_its_own_process(http: httpx.Client) -> None:
    """`run_simulator` in a child process answers a bind; its output shows no raw phone number."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "from worker.simulator import run_simulator; "
        f"run_simulator(port={port}, pool_size=5, log_level='debug')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_serving(http, f"{url}/_simulator/ledger", proc), timeout=15)
        signed = sign_request(
            "BindAxb", bind_params(300), endpoint=url, access_key_id=AK, secret=SECRET, scheme="v1"
        )
        assert send(http, signed).json()["SecretBindDTO"]["SecretNo"] == "17100000000"
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    text = output.decode()
    assert "Dypls simulator on http://127.0.0.1" in text and "BindAxb 200 OK" in text
    assert "13800000300" not in text and "13900000300" not in text
