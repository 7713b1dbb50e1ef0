"""The vendor client: every outcome becomes the right typed error, from one table; texts are masked."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.pipeline_fixture import apply_env
from tests.test_pipeline import expiration
from worker import errors
from worker.errors import (
    AccountError,
    AmbiguousVendorError,
    Handling,
    RetryableVendorError,
    TerminalVendorError,
    ThrottledError,
    TransportError,
    classify,
)
from worker.settings import Settings
from worker.vendor import DyplsClient, parse_bind_request

A = "13812345678"


def bind_request(out_id: str = "c-1", **over: Any) -> Any:
    data = {
        "PoolKey": "FC100000001",
        "PhoneNoA": A,
        "PhoneNoB": "13987654321",
        "Expiration": expiration(),
        "OutId": out_id,
    }
    data.update(over)
    return parse_bind_request(data)


@pytest.fixture
def client(settings: Settings, simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    s = apply_env(monkeypatch, {"AXB_ENDPOINT": simulator.url, "AXB_READ_TIMEOUT_S": "0.5"})
    with DyplsClient(s) as c:
        yield c


@pytest.mark.parametrize("signature", ["v1", "v3"])
def test_both_signatures_bind_and_unbind_twice_is_fine(
    settings: Settings, simulator: Any, monkeypatch: pytest.MonkeyPatch, signature: str
) -> None:
    """v1 and v3 are accepted by the simulator; a second unbind answers isv.SUBS_NOT_EXIST as success."""
    s = apply_env(monkeypatch, {"AXB_ENDPOINT": simulator.url, "AXB_SIGNATURE": signature})
    with DyplsClient(s) as c:
        resp = c.bind_axb(bind_request())
        dto = resp.secret_bind_dto
        assert resp.code == "OK" and dto is not None and resp.request_id
        assert c.unbind_subscription("FC100000001", dto.secret_no, dto.subs_id).code == "OK"
        assert c.unbind_subscription("FC100000001", dto.secret_no, dto.subs_id).code == "isv.SUBS_NOT_EXIST"
        detail = c.query_subscription_detail("FC100000001", dto.subs_id, dto.secret_no)
        assert detail.secret_bind_detail_dto is not None and detail.secret_bind_detail_dto.status == 0


@pytest.mark.parametrize(
    ("faults", "cls", "code"),
    [
        ({"slow_response_ms": 1500, "slow_rate": 1.0}, AmbiguousVendorError, errors.READ_TIMEOUT),
        ({"reset_rate": 1.0}, AmbiguousVendorError, errors.TRANSPORT_ERROR),
        ({"html_502_rate": 1.0}, AmbiguousVendorError, errors.MALFORMED_RESPONSE),
        ({"truncated_json_rate": 1.0}, AmbiguousVendorError, errors.MALFORMED_RESPONSE),
        ({"missing_dto_rate": 1.0}, AmbiguousVendorError, errors.MALFORMED_RESPONSE),
        ({"http_5xx_rate": 1.0}, RetryableVendorError, None),
        ({"force_code": "isv.FLOW_LIMIT"}, ThrottledError, "isv.FLOW_LIMIT"),
        ({"force_code": "isp.SYSTEM_ERROR"}, RetryableVendorError, "isp.SYSTEM_ERROR"),
        ({"force_code": "isv.ACCOUNT_ABNORMAL"}, AccountError, "isv.ACCOUNT_ABNORMAL"),
        ({"force_code": "isv.SOMETHING_NEW"}, TerminalVendorError, "isv.SOMETHING_NEW"),
    ],
)
def test_each_vendor_fault_becomes_its_typed_error(
    client: Any, simulator: Any, faults: dict[str, Any], cls: type, code: str | None
) -> None:
    """Faults after the bind was applied are ambiguous; coded answers follow the table."""
    simulator.set_faults(**faults)
    with pytest.raises(cls) as info:
        client.bind_axb(bind_request())
    err = info.value
    if code:
        assert err.code == code
    assert A not in str(err) and A not in repr(err.args)


def test_gateway_throttling_carries_retry_after_in_seconds(client: Any, simulator: Any) -> None:
    """Throttling.User (HTTP 400) with x-acs-retry-after in ms → ThrottledError.retry_after_s."""
    simulator.set_faults(qps_limit=0, throttle_style="gateway", throttle_retry_after_ms=1500)
    with pytest.raises(ThrottledError) as info:
        client.bind_axb(bind_request())
    assert info.value.code == "Throttling.User" and info.value.http_status == 400
    assert info.value.retry_after_s == pytest.approx(1.5)


def test_a_refused_connection_is_a_transport_error_that_was_not_sent(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens: TransportError(sent=False), safe to retry with a fresh nonce."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    st = apply_env(monkeypatch, {"AXB_ENDPOINT": f"http://127.0.0.1:{port}"})
    with DyplsClient(st) as c, pytest.raises(TransportError) as info:
        c.bind_axb(bind_request())
    assert info.value.sent is False and info.value.handling is Handling.RETRYABLE


def test_the_code_table_classifies_every_documented_code_and_unknowns_by_status() -> None:
    """One table: unknown codes are terminal unless the HTTP status is 5xx; Throttling.* throttles."""
    assert classify("isv.NO_AVAILABLE_NUMBER") is Handling.NO_NUMBER
    assert classify("SignatureNonceUsed") is Handling.AMBIGUOUS
    assert classify("InvalidTimeStamp.Expired") is Handling.CLOCK
    assert classify("Throttling.Api") is Handling.THROTTLED
    assert classify("isp.RAM_PERMISSION_DENY") is Handling.ACCOUNT
    assert classify("Weird.Code", 503) is Handling.RETRYABLE
    assert classify("Weird.Code", 400) is Handling.TERMINAL
    assert classify("Weird.Code") is Handling.TERMINAL


def test_threads_sharing_one_client_each_bind_and_a_closed_client_binds_again(client: Any) -> None:
    """Eight threads bind through one DyplsClient at once (each on its own connection pool);
    after close() the same client builds new connections on its next call."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: client.bind_axb(bind_request(f"t-{i}")), range(24)))
    assert all(a.code == "OK" and a.secret_bind_dto is not None for a in answers)
    assert len({a.secret_bind_dto.subs_id for a in answers}) == 24
    client.close()
    again = client.bind_axb(bind_request("after-close"))
    assert again.code == "OK"


def test_a_proxy_from_the_environment_is_still_used(
    settings: Settings, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTPS_PROXY / HTTP_PROXY pointing at a dead port: the vendor call goes there (and fails
    as not sent), as httpx's own client honours the environment; NO_PROXY exempts the host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    s = apply_env(monkeypatch, {"AXB_ENDPOINT": simulator.url})
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with DyplsClient(s) as c, pytest.raises(TransportError) as info:
        c.bind_axb(bind_request("proxied"))
    assert info.value.sent is False
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with DyplsClient(s) as c:
        assert c.bind_axb(bind_request("direct")).code == "OK"
