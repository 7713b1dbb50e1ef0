"""What the simulator sends back: :class:`Answer`, the :class:`Admission` of a call, the
gateway and business answer bodies, and drawing the injected faults.

Every builder finishes the call's ledger ``entry`` (code, HTTP status, fault) and logs it, masked.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.masking import mask_text
from worker.simulator.config import Faults
from worker.simulator.gateway import Call, GatewayError, gateway_status, is_gateway_code
from worker.vendor.signing import new_nonce

log = logging.getLogger("worker.simulator")

PostFault = Literal["reset", "truncated_json", "missing_dto", "slow"]


def new_request_id() -> str:
    """A RequestId as the vendor writes one: an upper-case UUID (from the signing nonces'
    generator: no syscall per answer)."""
    return str(uuid.UUID(hex=new_nonce())).upper()


@dataclass
class Answer:
    """What to send back. ``body`` is None for the HTML 502 page."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    post_fault: PostFault | None = None  # reset / truncated_json / slow, applied when rendering
    slow_s: float = 0.0
    html: bool = False


@dataclass
class Admission:
    """A call after the gateway: either already answered, or waiting for business logic."""

    entry: dict[str, Any]
    call: Call
    generation: int
    latency_s: float = 0.0
    answer: Answer | None = None
    post_fault: PostFault | None = None
    slow_s: float = 0.0


def log_call(entry: dict[str, Any]) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s",
            mask_text(
                f"{entry['action'] or '-'} {entry['http_status']} {entry['code']} "
                f"out_id={entry['out_id']} fault={entry['fault']} request_id={entry['request_id']}"
            ),
        )


def gateway_body(request_id: str, code: str, message: str | None, host_id: str) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "HostId": host_id,
        "Code": code,
        "Message": message or GatewayError(code).message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=Dyplsapi&requestId={request_id}",
    }


def gateway_answer(
    entry: dict[str, Any], code: str, message: str | None, host_id: str, status: int | None = None
) -> Answer:
    status = status or gateway_status(code)
    entry.update(code=code, http_status=status)
    log_call(entry)
    return Answer(status, gateway_body(entry["request_id"], code, message, host_id))


def business_answer(entry: dict[str, Any], code: str, message: str) -> Answer:
    entry.update(code=code, http_status=200)
    log_call(entry)
    return Answer(200, {"RequestId": entry["request_id"], "Code": code, "Message": message})


def with_retry_after(answer: Answer, retry_after_ms: int | None) -> Answer:
    """``answer`` with the gateway's ``x-acs-retry-after`` header, when a value is configured."""
    if retry_after_ms is not None:
        answer.headers["x-acs-retry-after"] = str(retry_after_ms)
    return answer


def throttled_answer(entry: dict[str, Any], faults: Faults, host_id: str) -> Answer:
    entry["fault"] = "throttled"
    if faults.throttle_style == "gateway":
        answer = gateway_answer(entry, "Throttling.User", None, host_id)
        return with_retry_after(answer, faults.throttle_retry_after_ms)
    return business_answer(entry, "isv.FLOW_LIMIT", "flow limit exceeded")


def coded_answer(entry: dict[str, Any], code: str, faults: Faults, host_id: str) -> Answer:
    """The answer of vendor code ``code``: a gateway error or a business code in a 200."""
    if is_gateway_code(code):
        answer = gateway_answer(entry, code, None, host_id)
        if code.startswith("Throttling"):
            return with_retry_after(answer, faults.throttle_retry_after_ms)
        return answer
    return business_answer(entry, code, f"simulated {code}")


def draw_pre_business_fault(
    entry: dict[str, Any], faults: Faults, rng: random.Random, host_id: str
) -> tuple[Answer | None, Faults]:
    """A forced code, an HTTP 5xx, an HTML 502 or a transient code, drawn in that order.

    Returns the answer (None: no fault) and the faults to keep (a forced code counts down).
    """
    if faults.force_code and (faults.force_count is None or faults.force_count > 0):
        kept = faults
        if faults.force_count is not None:
            left = faults.force_count - 1
            kept = faults.with_changes(
                {"force_count": left} if left > 0 else {"force_code": None, "force_count": None}
            )
        entry["fault"] = "force_code"
        return coded_answer(entry, faults.force_code, kept, host_id), kept
    if faults.http_5xx_rate and rng.random() < faults.http_5xx_rate:
        entry["fault"] = "http_5xx"
        code = rng.choice(("InternalError", "ServiceUnavailable"))
        return gateway_answer(entry, code, None, host_id), faults
    if faults.html_502_rate and rng.random() < faults.html_502_rate:
        entry.update(fault="html_502", code=None, http_status=502)
        log_call(entry)
        return Answer(502, None, {"content-type": "text/html"}, html=True), faults
    if faults.error_rate and rng.random() < faults.error_rate:
        entry["fault"] = "error_rate"
        return coded_answer(entry, rng.choice(faults.error_codes), faults, host_id), faults
    return None, faults


def draw_post_fault(faults: Faults, rng: random.Random) -> tuple[PostFault | None, float]:
    """A fault applied to the rendered answer (reset, truncated JSON, missing DTO, slow), or none."""
    if faults.reset_rate and rng.random() < faults.reset_rate:
        return "reset", 0.0
    if faults.truncated_json_rate and rng.random() < faults.truncated_json_rate:
        return "truncated_json", 0.0
    if faults.missing_dto_rate and rng.random() < faults.missing_dto_rate:
        return "missing_dto", 0.0
    if faults.slow_rate and faults.slow_response_ms and rng.random() < faults.slow_rate:
        return "slow", faults.slow_response_ms / 1000.0
    return None, 0.0
