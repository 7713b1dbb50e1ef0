"""``worker.vendor`` signs byte-identically to the official Alibaba Cloud SDKs (their own code is the oracle).

- v1 (HMAC-SHA1): ``aliyunsdkcore.auth.composer.rpc_signature_composer`` (string-to-sign, signature,
  and the whole signed URL of ``get_signed_url``) and ``get_rpcsignature`` of the Tea utils.
- v3 (ACS3-HMAC-SHA256): ``get_authorization`` of the Tea utils (and their canonical query / header
  helpers for the lower-level functions).
- The wire: the query in ``SignedRequest.url`` decodes back to exactly the signed parameters and
  ``httpx`` puts it on the wire byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from alibabacloud_openapi_util import client as openapi_util
from alibabacloud_openapi_util.client import Client as OpenApiUtil
from aliyunsdkcore.auth.composer import rpc_signature_composer as rpc_composer
from aliyunsdkcore.utils import parameter_helper
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from Tea.request import TeaRequest

from worker.vendor import (
    API_VERSION,
    EMPTY_SHA256,
    V3_ALGORITHM,
    SignedRequest,
    canonical_query,
    percent_encode,
    sign_request,
    utc_timestamp,
    v1_signature,
    v1_string_to_sign,
    v3_canonical_request,
    v3_signature,
    v3_string_to_sign,
)

try:  # newer alibabacloud_tea_openapi ships its own copy of the utils
    from alibabacloud_tea_openapi.utils import Utils as TeaOpenApiUtils
except ImportError:  # pragma: no cover - depends on the installed SDK version
    TeaOpenApiUtils = None  # type: ignore[assignment,misc]

sdk_compose_string_to_sign = getattr(rpc_composer, "__compose_string_to_sign")
sdk_get_signature = getattr(rpc_composer, "__get_signature")

ENDPOINT = "https://dyplsapi.aliyuncs.com"
AK = "LTAI5tExampleAccessKey"
SECRET = "exampleSecret0123456789abcdef"
NONCE = "3f1c2a4b5d6e4f708192a3b4c5d6e7f8"
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
TIMESTAMP = "2025-03-04T05:06:07Z"
TIMESTAMP_RE = re.compile(r"\A\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")

V1_SYSTEM_KEYS = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "RegionId",
        "Signature",
        "SignatureType",
    }
)

BIND_AXB = {
    "PoolKey": "FC100000123456789",
    "PhoneNoA": "13800000000",
    "PhoneNoB": "13900000000",
    "Expiration": "2026-12-01 12:00:00",
    "ExpectCity": "北京",
    "OutId": "trip-42",
    "OutOrderId": "order/2026+12*01~a&b=c",
    "IsRecordingEnabled": "true",
    "CallDisplayType": "1",
    "ASRStatus": "false",
    "CallRestrict": "CONTROL_BX_DISABLE",
}
EMPTY: dict[str, str] = {}
SPECIALS = {
    "Space": "a b  c",
    "Plus": "+",
    "Amp": "&",
    "Eq": "=",
    "Star": "*",
    "Tilde": "~",
    "Slash": "/",
    "Percent": "%",
    "PercentEscape": "%20%2A%7E",
    "AllSpecials": " + & = * ~ / % ",
    "City": "北京 市",
    "Empty": "",
    "Emoji": "é😀",
    "Controls": "\x00\t\n\r\x7f",
    "Name.1": "x=y&z",
    "Snake_key-x": "q?#[]@!$'(),;:",
}
VECTORS = pytest.mark.parametrize(
    "params", [BIND_AXB, EMPTY, SPECIALS], ids=["bind_axb", "empty", "specials"]
)
SECRETS = pytest.mark.parametrize("secret", [SECRET, "", "秘密 &+=/%~*"], ids=["ascii", "empty", "unicode"])


# --- oracles and helpers -----------------------------------------------------------------------


def v1_expected_query(
    params: Mapping[str, str], nonce: str = NONCE, timestamp: str = TIMESTAMP
) -> dict[str, str]:
    """The parameters v1 must sign, per DYPLS.md, built independently of ``sign_request``."""
    query = dict(params)
    query.update(
        {
            "Action": "BindAxb",
            "Version": API_VERSION,
            "Format": "JSON",
            "AccessKeyId": AK,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": nonce,
            "Timestamp": timestamp,
            "RegionId": "cn-hangzhou",
        }
    )
    return query


def sign(params: Mapping[str, str], scheme: Any, secret: str = SECRET) -> SignedRequest:
    return sign_request(
        "BindAxb",
        params,
        endpoint=ENDPOINT,
        access_key_id=AK,
        secret=secret,
        scheme=scheme,
        nonce=NONCE,
        now=NOW,
    )


def query_of(signed: SignedRequest) -> str:
    return urlsplit(signed.url).query


def v3_tea_request(params: Mapping[str, str], headers: Mapping[str, str]) -> TeaRequest:
    request = TeaRequest()
    request.method = "POST"
    request.pathname = "/"
    request.query = dict(params)
    request.headers = {k: v for k, v in headers.items() if k != "authorization"}
    return request


def tea_authorizations(
    params: Mapping[str, str], headers: Mapping[str, str], payload: str, secret: str
) -> list[str]:
    """``get_authorization`` of every installed Tea utils flavour."""
    request = v3_tea_request(params, headers)
    utils = [OpenApiUtil] + ([TeaOpenApiUtils] if TeaOpenApiUtils is not None else [])
    return [u.get_authorization(request, V3_ALGORITHM, payload, AK, secret) for u in utils]


def tea_rpc_signatures(query: Mapping[str, str], secret: str) -> list[str]:
    """``get_rpcsignature`` of every installed Tea utils flavour."""
    utils = [OpenApiUtil] + ([TeaOpenApiUtils] if TeaOpenApiUtils is not None else [])
    return [u.get_rpcsignature(dict(query), "POST", secret) for u in utils]


def assert_v1_matches_oracles(params: Mapping[str, str], secret: str) -> None:
    signed = sign(params, "v1", secret)
    expected = v1_expected_query(params)
    string_to_sign = v1_string_to_sign("POST", expected)
    assert string_to_sign == sdk_compose_string_to_sign("POST", dict(expected))
    signature = v1_signature(string_to_sign, secret)
    assert signature == sdk_get_signature(string_to_sign, secret)
    assert all(oracle == signature for oracle in tea_rpc_signatures(expected, secret))
    assert dict(parse_qsl(query_of(signed), keep_blank_values=True)) == {**expected, "Signature": signature}
    assert query_of(signed) == canonical_query({**expected, "Signature": signature})


def assert_v3_matches_oracles(params: Mapping[str, str], secret: str) -> None:
    signed = sign(params, "v3", secret)
    headers = {k: v for k, v in signed.headers.items() if k != "authorization"}
    assert headers == {
        "host": "dyplsapi.aliyuncs.com",
        "x-acs-action": "BindAxb",
        "x-acs-version": API_VERSION,
        "x-acs-date": TIMESTAMP,
        "x-acs-signature-nonce": NONCE,
        "x-acs-content-sha256": EMPTY_SHA256,
    }
    for oracle in tea_authorizations(params, headers, EMPTY_SHA256, secret):
        assert signed.headers["authorization"] == oracle
    canonical, signed_names = v3_canonical_request("POST", "/", params, headers, EMPTY_SHA256)
    tea_headers, tea_names = openapi_util.get_canonicalized_headers(headers)
    assert signed_names == tea_names
    assert canonical == "\n".join(
        [
            "POST",
            "/",
            openapi_util.get_canonical_query_string(dict(params)),
            tea_headers,
            tea_names,
            EMPTY_SHA256,
        ]
    )
    signature = v3_signature(v3_string_to_sign(canonical), secret)
    assert signed.headers["authorization"].endswith(f",Signature={signature}")
    assert query_of(signed) == canonical_query(params)


def assert_wire_carries_what_was_signed(signed: SignedRequest, signed_params: Mapping[str, str]) -> None:
    query = query_of(signed)
    assert dict(parse_qsl(query, keep_blank_values=True)) == dict(signed_params)
    assert len(parse_qsl(query, keep_blank_values=True)) == len(signed_params)
    assert dict(httpx.URL(signed.url).params) == dict(signed_params)
    request = httpx.Request(signed.method, signed.url, headers=signed.headers)
    assert request.url.query == query.encode("ascii")
    assert request.url.raw_path == (f"/?{query}" if query else "/").encode("ascii")
    assert str(request.url) == signed.url


def v1_signed_params(signed: SignedRequest, params: Mapping[str, str]) -> dict[str, str]:
    expected = v1_expected_query(params, nonce=signed.nonce, timestamp=signed.timestamp)
    expected["Signature"] = v1_signature(v1_string_to_sign("POST", expected), SECRET)
    return expected


# --- strategies --------------------------------------------------------------------------------

api_names = st.from_regex(r"\A[A-Z][A-Za-z0-9]{0,15}(\.[1-9])?(_[a-z]{1,3})?\Z", fullmatch=True).filter(
    lambda name: name not in V1_SYSTEM_KEYS
)
any_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)
special_text = st.text(alphabet=st.sampled_from(" +&=*~/%北京é😀-_."), max_size=8)
values = st.one_of(st.just(""), any_text, special_text)
param_dicts = st.dictionaries(api_names, values, max_size=8)
secrets = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), max_size=40)
bounded = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- v1 ----------------------------------------------------------------------------------------


@VECTORS
@SECRETS
def test_v1_string_to_sign_and_signature_match_every_sdk_oracle_for_fixed_vectors(
    params: dict[str, str], secret: str
) -> None:
    """v1 string-to-sign and signature equal aliyunsdkcore's and the Tea utils' for the fixed vectors."""
    assert_v1_matches_oracles(params, secret)


@VECTORS
def test_v1_signed_url_equals_aliyunsdkcore_get_signed_url_with_pinned_nonce_and_timestamp(
    params: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole v1 query (every k=v pair) and string-to-sign equal what get_signed_url produces."""
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: TIMESTAMP)
    monkeypatch.setattr(parameter_helper, "get_uuid", lambda: NONCE)
    sdk_params = {**params, "Action": "BindAxb", "Version": API_VERSION, "RegionId": "cn-hangzhou"}
    sdk_url, sdk_string_to_sign = rpc_composer.get_signed_url(sdk_params, AK, SECRET, "JSON", "POST", {})
    # The old SDK also sends an empty SignatureType; give ours the same parameter set to compare.
    signed = sign({**params, "SignatureType": ""}, "v1")
    ours = dict(parse_qsl(query_of(signed), keep_blank_values=True))
    ours.pop("Signature")
    assert v1_string_to_sign("POST", ours) == sdk_string_to_sign
    assert sdk_url.startswith("/?")
    assert sorted(query_of(signed).split("&")) == sorted(sdk_url[2:].split("&"))


@bounded
@given(params=param_dicts, secret=secrets)
def test_v1_matches_every_sdk_oracle_for_generated_params(params: dict[str, str], secret: str) -> None:
    """For generated params and secrets, v1 matches aliyunsdkcore and the Tea utils exactly."""
    assert_v1_matches_oracles(params, secret)


# --- v3 ----------------------------------------------------------------------------------------


@VECTORS
@SECRETS
def test_v3_authorization_matches_tea_get_authorization_for_fixed_vectors(
    params: dict[str, str], secret: str
) -> None:
    """The v3 Authorization header equals Tea's get_authorization for the fixed vectors."""
    assert_v3_matches_oracles(params, secret)


@bounded
@given(params=param_dicts, secret=secrets)
def test_v3_matches_tea_get_authorization_for_generated_params(params: dict[str, str], secret: str) -> None:
    """For generated params and secrets, the v3 Authorization header equals Tea's exactly."""
    assert_v3_matches_oracles(params, secret)


def test_v3_lower_level_functions_match_tea_for_mixed_case_duplicate_and_padded_headers() -> None:
    """Headers differing only in case, padded values and a non-empty payload hash sign as Tea signs them."""
    headers = {
        "Host": "dyplsapi.aliyuncs.com",
        "host": " other.example ",
        "X-Acs-Action": "BindAxb",
        "x-acs-version": f"  {API_VERSION}\t",
        "x-acs-date": TIMESTAMP,
        "x-acs-signature-nonce": NONCE,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    payload = "ab" * 32
    canonical, names = v3_canonical_request("POST", "/", SPECIALS, headers, payload)
    assert names == "content-type;host;x-acs-action;x-acs-date;x-acs-signature-nonce;x-acs-version"
    signature = v3_signature(v3_string_to_sign(canonical), SECRET)
    expected = f"{V3_ALGORITHM} Credential={AK},SignedHeaders={names},Signature={signature}"
    for oracle in tea_authorizations(SPECIALS, headers, payload, SECRET):
        assert oracle == expected


def test_percent_encode_is_rfc3986_as_the_sdks_do_it() -> None:
    """Space becomes %20, * becomes %2A, ~ is kept, and UTF-8 bytes are escaped in upper-case hex."""
    assert percent_encode(" *~+&=/%北") == "%20%2A~%2B%26%3D%2F%25%E5%8C%97"
    assert percent_encode("AZaz09-_.~") == "AZaz09-_.~"


@given(value=st.text() | st.from_regex(r"[A-Za-z0-9_.~-]*", fullmatch=True))
def test_percent_encode_and_the_v1_re_encoding_equal_quote_for_any_text(value: str) -> None:
    """The shortcuts (a plain value is returned as it is; v1 re-encodes a canonical query with a
    translate table) give exactly what ``urllib.parse.quote(..., safe="~")`` gives."""
    assert percent_encode(value) == quote(value, safe="~", encoding="utf-8")
    query = canonical_query({"K" + value: value, "A": "x y"})
    assert v1_string_to_sign("GET", {}, query=query) == f"GET&%2F&{quote(query, safe='~')}"


# --- the wire ----------------------------------------------------------------------------------


@VECTORS
def test_v1_url_decodes_to_the_signed_params_and_httpx_sends_it_unchanged(params: dict[str, str]) -> None:
    """The v1 URL query parses back to exactly the signed params and httpx keeps its bytes."""
    signed = sign(params, "v1")
    assert_wire_carries_what_was_signed(signed, v1_signed_params(signed, params))


@VECTORS
def test_v3_url_decodes_to_the_signed_params_and_httpx_sends_it_unchanged(params: dict[str, str]) -> None:
    """The v3 URL query parses back to exactly the signed params and httpx keeps its bytes."""
    assert_wire_carries_what_was_signed(sign(params, "v3"), params)


@bounded
@given(params=param_dicts)
def test_generated_params_survive_the_wire_unchanged_in_both_schemes(params: dict[str, str]) -> None:
    """For generated params, both schemes' queries decode back to the signed params, byte-stable in httpx."""
    v1 = sign(params, "v1")
    assert_wire_carries_what_was_signed(v1, v1_signed_params(v1, params))
    assert_wire_carries_what_was_signed(sign(params, "v3"), params)


@pytest.fixture
def request_line_server() -> Iterator[tuple[str, list[bytes]]]:
    """A one-shot local HTTP server recording the raw request line it receives."""
    seen: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            seen.append(data.split(b"\r\n", 1)[0])
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", seen
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_the_request_line_on_a_real_socket_carries_the_signed_canonical_query(
    scheme: Any, request_line_server: tuple[str, list[bytes]]
) -> None:
    """Sent the way DyplsClient.send sends it, the bytes on the wire are exactly the signed query."""
    endpoint, seen = request_line_server
    signed = sign_request(
        "BindAxb", {**BIND_AXB, **SPECIALS}, endpoint=endpoint, access_key_id=AK, secret=SECRET, scheme=scheme
    )
    with httpx.Client(timeout=5) as client:
        response = client.request(
            signed.method, signed.url, headers=signed.headers, content=signed.body or None
        )
    assert response.status_code == 200
    assert seen == [f"POST /?{query_of(signed)} HTTP/1.1".encode("ascii")]


# --- nonce, timestamp, replay ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_a_signed_request_survives_its_json_form_whole(scheme: Any) -> None:
    """The stored form (the record's ``inflight``) holds every field, and reads back equal: a
    replay re-sends exactly what was signed."""
    signed = sign_request(
        "BindAxb",
        {**BIND_AXB, **SPECIALS},
        endpoint="https://x",
        access_key_id=AK,
        secret=SECRET,
        scheme=scheme,
    )
    stored = json.loads(json.dumps(signed.to_json_dict()))
    assert stored == dataclasses.asdict(signed)
    assert SignedRequest.from_json_dict(stored) == signed


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_each_call_draws_a_fresh_uuid4_nonce_unless_one_is_given(scheme: Any) -> None:
    """Without a nonce every call signs with a new uuid4; a given nonce is used verbatim."""
    kwargs: dict[str, Any] = {"endpoint": ENDPOINT, "access_key_id": AK, "secret": SECRET, "scheme": scheme}
    nonces = {sign_request("BindAxb", BIND_AXB, **kwargs).nonce for _ in range(50)}
    assert len(nonces) == 50
    assert all(uuid.UUID(n).version == 4 for n in nonces)
    pinned = sign_request("BindAxb", BIND_AXB, nonce=NONCE, **kwargs)
    assert pinned.nonce == NONCE
    on_wire = (
        dict(parse_qsl(query_of(pinned)))["SignatureNonce"]
        if scheme == "v1"
        else pinned.headers["x-acs-signature-nonce"]
    )
    assert on_wire == NONCE


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_the_timestamp_is_utc_in_the_iso_format_and_is_what_gets_signed(scheme: Any) -> None:
    """The timestamp is YYYY-MM-DDTHH:MM:SSZ in UTC, and the signed copy carries the same value."""
    before = datetime.now(UTC).replace(microsecond=0)
    signed = sign_request(
        "BindAxb", BIND_AXB, endpoint=ENDPOINT, access_key_id=AK, secret=SECRET, scheme=scheme
    )
    after = datetime.now(UTC)
    assert TIMESTAMP_RE.match(signed.timestamp)
    stamped = datetime.strptime(signed.timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamped <= after
    on_wire = (
        dict(parse_qsl(query_of(signed)))["Timestamp"] if scheme == "v1" else signed.headers["x-acs-date"]
    )
    assert on_wire == signed.timestamp


def test_an_aware_time_in_another_zone_is_converted_to_utc_and_a_naive_one_is_taken_as_utc() -> None:
    """08:00+08:00 and naive 00:00 both stamp as 00:00Z, and signed_at is that same instant."""
    beijing = datetime(2025, 1, 1, 8, 0, 0, tzinfo=timezone(timedelta(hours=8)))
    naive = datetime(2025, 1, 1, 0, 0, 0)  # naive on purpose: taken as UTC
    assert utc_timestamp(beijing) == utc_timestamp(naive) == "2025-01-01T00:00:00Z"
    for now in (beijing, naive):
        signed = sign_request(
            "BindAxb", BIND_AXB, endpoint=ENDPOINT, access_key_id=AK, secret=SECRET, now=now
        )
        assert signed.timestamp == "2025-01-01T00:00:00Z"
        assert signed.signed_at == datetime(2025, 1, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("scheme", ["v1", "v3"])
def test_a_signed_request_survives_a_json_round_trip_byte_for_byte(scheme: Any) -> None:
    """A SignedRequest stored as JSON comes back identical, so a replay re-sends the same bytes."""
    signed = sign({**BIND_AXB, **SPECIALS}, scheme)
    again = SignedRequest.from_json_dict(json.loads(json.dumps(signed.to_json_dict())))
    assert again == signed


def test_nonces_are_32_hex_digits_and_a_forked_child_draws_its_own() -> None:
    """A prefork child must not repeat its parent's nonces (the vendor would answer
    SignatureNonceUsed to the second binding of the two)."""
    import os

    from worker.vendor.signing import new_nonce

    nonces = {new_nonce() for _ in range(10_000)}
    assert len(nonces) == 10_000 and all(re.fullmatch(r"[0-9a-f]{32}", n) for n in nonces)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next nonces, to the parent
        os.write(write_end, " ".join(new_nonce() for _ in range(3)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = os.read(read_end, 4096).decode().split()
    os.close(read_end)
    parent = [new_nonce() for _ in range(3)]
    assert len(child) == 3 and not set(child) & set(parent)
