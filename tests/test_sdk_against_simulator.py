"""Both official Dypls SDKs, unchanged, talk to the simulator over HTTP as they would to the vendor.

- old style: ``aliyunsdkcore.client.AcsClient`` + ``aliyunsdkdyplsapi`` requests (signature v1, all
  parameters in the query of a POST); the endpoint is set per request and the port on the client;
- new style: ``alibabacloud_dyplsapi20170525.client.Client`` (Tea, signature v3) with
  ``Config(endpoint="127.0.0.1:PORT", protocol="http")``.

A wrong secret is refused by both. The old SDK compares the server's string-to-sign (the part of
the message after ``server string to sign is:``) with its own: when they match, only the secret
can be wrong, and it raises ``ServerException("InvalidAccessKeySecret")``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alibabacloud_dyplsapi20170525 import models as tea_models
from alibabacloud_dyplsapi20170525.client import Client as TeaClient
from alibabacloud_tea_openapi.exceptions import ClientException as TeaClientException
from alibabacloud_tea_openapi.exceptions import ThrottlingException as TeaThrottlingException
from alibabacloud_tea_openapi.models import Config as TeaConfig
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from aliyunsdkdyplsapi.request.v20170525.BindAxbRequest import BindAxbRequest
from aliyunsdkdyplsapi.request.v20170525.QuerySubscriptionDetailRequest import (
    QuerySubscriptionDetailRequest,
)
from aliyunsdkdyplsapi.request.v20170525.UnbindSubscriptionRequest import UnbindSubscriptionRequest

from tests.simulator_fixture import TEST_ACCESS_KEY_ID as AK
from tests.simulator_fixture import TEST_ACCESS_KEY_SECRET as SECRET
from tests.simulator_fixture import RunningSimulator

POOL = "FC100000001"


def expiration(minutes: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(hours=8, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


# --- the old SDK (aliyunsdkcore, signature v1) ------------------------------------------------------


def old_client(sim: RunningSimulator, secret: str = SECRET, access_key_id: str = AK) -> AcsClient:
    return AcsClient(access_key_id, secret, "cn-hangzhou", port=sim.port, auto_retry=False, timeout=5)


def aimed(sim: RunningSimulator, request: RpcRequest) -> RpcRequest:
    """Point one request at the simulator (host here, port on the client) over plain HTTP."""
    request.set_endpoint(sim.host)
    request.set_protocol_type("http")
    return request


def old_bind_request(sim: RunningSimulator, i: int) -> BindAxbRequest:
    request = BindAxbRequest()
    request.set_PoolKey(POOL)
    request.set_PhoneNoA(f"1380000{i:04d}")
    request.set_PhoneNoB(f"1390000{i:04d}")
    request.set_Expiration(expiration())
    request.set_IsRecordingEnabled(True)
    request.set_OutId(f"sdk-{i}")
    aimed(sim, request)
    return request


def old_call(client: AcsClient, request: RpcRequest) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(client.do_action_with_exception(request))
    return body


def test_the_old_sdk_binds_queries_and_unbinds(simulator: RunningSimulator) -> None:
    """AcsClient + BindAxbRequest: OK with a SecretBindDTO; query shows it; unbind frees it."""
    client = old_client(simulator)
    body = old_call(client, old_bind_request(simulator, 1))
    assert body["Code"] == "OK"
    dto = body["SecretBindDTO"]
    assert dto["SecretNo"] == "17100000000" and len(dto["SubsId"]) == 16
    (entry,) = simulator.calls()
    assert entry["scheme"] == "v1" and entry["params"]["IsRecordingEnabled"] == "True"

    detail_request = QuerySubscriptionDetailRequest()
    detail_request.set_PoolKey(POOL)
    detail_request.set_PhoneNoX(dto["SecretNo"])
    detail_request.set_SubsId(dto["SubsId"])
    detail = old_call(client, aimed(simulator, detail_request))["SecretBindDetailDTO"]
    assert detail["Status"] == 1 and detail["NeedRecord"] is True

    unbind_request = UnbindSubscriptionRequest()
    unbind_request.set_PoolKey(POOL)
    unbind_request.set_SecretNo(dto["SecretNo"])
    unbind_request.set_SubsId(dto["SubsId"])
    assert old_call(client, aimed(simulator, unbind_request))["Code"] == "OK"
    assert simulator.bindings()[0]["status"] == "unbound"
    # A second unbind is a business answer (HTTP 200), not an exception.
    again = UnbindSubscriptionRequest()
    again.set_PoolKey(POOL)
    again.set_SecretNo(dto["SecretNo"])
    again.set_SubsId(dto["SubsId"])
    assert old_call(client, aimed(simulator, again))["Code"] == "isv.SUBS_NOT_EXIST"


def test_the_old_sdk_reports_a_wrong_secret_as_invalid_access_key_secret(simulator: RunningSimulator) -> None:
    """Wrong secret: HTTP 400 SignatureDoesNotMatch, which aliyunsdkcore turns into InvalidAccessKeySecret."""
    with pytest.raises(ServerException) as info:
        old_call(old_client(simulator, secret="wrong-secret"), old_bind_request(simulator, 2))
    assert info.value.get_error_code() == "InvalidAccessKeySecret"
    assert info.value.get_http_status() == 400 and info.value.get_request_id()
    assert simulator.calls()[0]["code"] == "SignatureDoesNotMatch"
    assert simulator.bindings() == []


def test_the_old_sdk_reports_an_unknown_key(simulator: RunningSimulator) -> None:
    """Unknown AccessKeyId: ServerException InvalidAccessKeyId.NotFound with HTTP 404."""
    with pytest.raises(ServerException) as info:
        old_call(old_client(simulator, access_key_id="LTAIunknown"), old_bind_request(simulator, 3))
    assert info.value.get_error_code() == "InvalidAccessKeyId.NotFound"
    assert info.value.get_http_status() == 404


# --- the new SDK (Tea, signature v3) -----------------------------------------------------------------


def tea_client(sim: RunningSimulator, secret: str = SECRET) -> TeaClient:
    config = TeaConfig(
        access_key_id=AK,
        access_key_secret=secret,
        endpoint=sim.endpoint,
        protocol="http",
        read_timeout=5000,
        connect_timeout=5000,
    )
    return TeaClient(config)


def tea_bind_request(i: int) -> tea_models.BindAxbRequest:
    return tea_models.BindAxbRequest(
        pool_key=POOL,
        phone_no_a=f"1380000{i:04d}",
        phone_no_b=f"1390000{i:04d}",
        expiration=expiration(),
        is_recording_enabled=False,
        call_restrict="CONTROL_BX_DISABLE",
        out_id=f"tea-{i}",
    )


def test_the_new_sdk_binds_queries_and_unbinds(simulator: RunningSimulator) -> None:
    """Tea client: bind_axb returns a SecretBindDTO; query_subscription_detail and unbind work."""
    client = tea_client(simulator)
    response = client.bind_axb(tea_bind_request(10))
    assert response.status_code == 200 and response.body.code == "OK"
    dto = response.body.secret_bind_dto
    assert dto.secret_no == "17100000000" and len(dto.subs_id) == 16 and dto.extension == ""
    (entry,) = simulator.calls()
    assert entry["scheme"] == "v3" and entry["out_id"] == "tea-10"

    detail = client.query_subscription_detail(
        tea_models.QuerySubscriptionDetailRequest(
            pool_key=POOL, phone_no_x=dto.secret_no, subs_id=dto.subs_id
        )
    ).body.secret_bind_detail_dto
    assert detail.status == 1 and detail.phone_no_a == "13800000010"
    assert detail.call_restrict == "CONTROL_BX_DISABLE" and detail.need_record is False

    unbound = client.unbind_subscription(
        tea_models.UnbindSubscriptionRequest(pool_key=POOL, secret_no=dto.secret_no, subs_id=dto.subs_id)
    )
    assert unbound.body.code == "OK"
    assert simulator.sim.live_binding_count() == 0


def test_the_new_sdk_updates_the_expiry(simulator: RunningSimulator) -> None:
    """update_subscription(updateExpire) is accepted and shows in the detail."""
    client = tea_client(simulator)
    dto = client.bind_axb(tea_bind_request(11)).body.secret_bind_dto
    new_expiration = expiration(minutes=600)
    updated = client.update_subscription(
        tea_models.UpdateSubscriptionRequest(
            pool_key=POOL,
            subs_id=dto.subs_id,
            phone_no_x=dto.secret_no,
            operate_type="updateExpire",
            expiration=new_expiration,
        )
    )
    assert updated.body.code == "OK"
    assert simulator.bindings()[0]["expiration"] == new_expiration


def test_the_new_sdk_is_refused_with_a_wrong_secret(simulator: RunningSimulator) -> None:
    """Wrong secret: the Tea client raises ClientException SignatureDoesNotMatch (HTTP 400)."""
    with pytest.raises(TeaClientException) as info:
        tea_client(simulator, secret="wrong-secret").bind_axb(tea_bind_request(12))
    assert info.value.code == "SignatureDoesNotMatch" and info.value.status_code == 400
    assert "server string to sign is:ACS3-HMAC-SHA256" in info.value.message
    assert simulator.bindings() == []


def test_the_new_sdk_sees_gateway_throttling_with_its_retry_after(simulator: RunningSimulator) -> None:
    """Throttling.User with x-acs-retry-after: the Tea client raises ThrottlingException carrying it."""
    simulator.set_faults(qps_limit=0, throttle_style="gateway", throttle_retry_after_ms=2000)
    with pytest.raises(TeaThrottlingException) as info:
        tea_client(simulator).bind_axb(tea_bind_request(13))
    assert info.value.code == "Throttling.User" and info.value.retry_after == 2000
