"""The API gateway in front of Dypls: who is calling, and did they sign what they sent?

:func:`parse_call` reads a request in either signature style without judging it (the ledger
wants the action, nonce and OutId even of refused calls). :func:`authenticate` then checks it as
the gateway does, in order: required pieces, action and version, AccessKeyId, timestamp, and
signature, raising :class:`GatewayError`. Nonces are state and are checked by the simulator.
Signatures are recomputed with :mod:`worker.vendor` (signing), never a second implementation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Literal

from worker.simulator.config import ACTIONS
from worker.simulator.validation import parse_datetime
from worker.vendor import (
    API_VERSION,
    V3_ALGORITHM,
    v1_signature,
    v1_string_to_sign,
    v3_canonical_request,
    v3_signature,
    v3_string_to_sign,
)

# Parameters of the v1 envelope: everything else in the query or form is the action's own.
V1_COMMON = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "Timestamp",
        "RegionId",
    }
)
# v3 headers that must be covered by the signature when they are sent.
V3_MUST_SIGN = ("host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
TIMESTAMP_FIELDS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
SIGNATURE_MISMATCH = "Specified signature is not matched with our calculation. server string to sign is:"

# Gateway codes and their HTTP statuses (business codes travel as HTTP 200).
GATEWAY_STATUS: dict[str, int] = {
    "SignatureDoesNotMatch": 400,
    "IncompleteSignature": 400,
    "InvalidAccessKeyId.NotFound": 404,
    "InvalidAccessKeyId.Inactive": 400,
    "InvalidTimeStamp.Expired": 400,
    "InvalidTimeStamp.Format": 400,
    "SignatureNonceUsed": 400,
    "InvalidAction.NotFound": 404,
    "InvalidVersion": 400,
    "UnsupportedSignatureMethod": 400,
    "Throttling.User": 400,
    "Throttling.Api": 400,
    "Throttling": 400,
    "InternalError": 500,
    "ServiceUnavailable": 503,
}
GATEWAY_MESSAGES: dict[str, str] = {
    "InvalidAccessKeyId.NotFound": "Specified access key is not found.",
    "InvalidAccessKeyId.Inactive": "Specified access key is disabled.",
    "InvalidTimeStamp.Expired": "Specified time stamp or date value is expired.",
    "InvalidTimeStamp.Format": "Specified time stamp or date value is not well formatted.",
    "SignatureNonceUsed": "Specified signature nonce was used already.",
    "InvalidAction.NotFound": "Specified api is not found, please check your url and method.",
    "InvalidVersion": "Specified parameter Version is not valid.",
    "Throttling.User": "Request was denied due to user flow control.",
    "Throttling.Api": "Request was denied due to api flow control.",
    "Throttling": "Request was denied due to flow control.",
    "InternalError": "The request processing has failed due to some unknown error, exception or failure.",
    "ServiceUnavailable": "The request has failed due to a temporary failure of the server.",
}

_AUTHORIZATION = re.compile(
    r"^(?P<algorithm>\S+)\s+Credential=(?P<credential>[^,]*),\s*"
    r"SignedHeaders=(?P<signed>[^,]*),\s*Signature=(?P<signature>\S*)$"
)


def is_gateway_code(code: str) -> bool:
    return code in GATEWAY_STATUS or code.startswith("Throttling")


def gateway_status(code: str) -> int:
    return GATEWAY_STATUS.get(code, 400)


class GatewayError(Exception):
    """A refusal by the gateway: non-200 status, body ``{RequestId, HostId, Code, Message, Recommend}``."""

    def __init__(self, code: str, message: str | None = None, *, status: int | None = None) -> None:
        self.code = code
        self.message = message or GATEWAY_MESSAGES.get(code, code)
        self.status = status or gateway_status(code)
        super().__init__(f"{self.status} {code}: {self.message}")


@dataclass(frozen=True)
class IncomingRequest:
    """The parts of an HTTP request the gateway looks at, already decoded."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ","
    body: bytes = b""


@dataclass(frozen=True)
class Call:
    """What a request claims to be (not yet verified)."""

    scheme: Literal["v1", "v3"]
    action: str
    version: str
    access_key_id: str
    nonce: str
    timestamp: str
    signature: str
    params: dict[str, str]  # the action's own parameters
    signed_headers: tuple[str, ...] = field(default=())
    algorithm: str = ""
    signature_method: str = ""


def parse_call(req: IncomingRequest) -> Call:
    """Read the call in whichever style it was signed; never raises."""
    auth = req.headers.get("authorization", "")
    merged = {**req.query, **req.form}
    if auth.startswith("ACS3-"):
        m = _AUTHORIZATION.match(auth.strip())
        names = tuple(n.strip().lower() for n in m.group("signed").split(";") if n.strip()) if m else ()
        return Call(
            scheme="v3",
            action=req.headers.get("x-acs-action", ""),
            version=req.headers.get("x-acs-version", ""),
            access_key_id=m.group("credential") if m else "",
            nonce=req.headers.get("x-acs-signature-nonce", ""),
            timestamp=req.headers.get("x-acs-date", ""),
            signature=m.group("signature") if m else "",
            params=merged,
            signed_headers=names,
            algorithm=m.group("algorithm") if m else auth.split(" ", 1)[0],
        )
    return Call(
        scheme="v1",
        action=merged.get("Action", ""),
        version=merged.get("Version", ""),
        access_key_id=merged.get("AccessKeyId", ""),
        nonce=merged.get("SignatureNonce", ""),
        timestamp=merged.get("Timestamp", ""),
        signature=merged.get("Signature", ""),
        params={k: v for k, v in merged.items() if k not in V1_COMMON},
        signature_method=merged.get("SignatureMethod", ""),
    )


def authenticate(
    req: IncomingRequest,
    call: Call,
    *,
    credentials: Mapping[str, str],
    inactive: frozenset[str] | set[str] | tuple[str, ...] = (),
    now_s: float,
    tolerance_s: float,
) -> None:
    """Check ``call`` as the gateway does; raise :class:`GatewayError` on the first problem."""
    _require_pieces(call)
    if call.action not in ACTIONS:
        raise GatewayError("InvalidAction.NotFound")
    if call.version != API_VERSION:
        raise GatewayError("InvalidVersion")
    secret = credentials.get(call.access_key_id)
    if secret is None:
        raise GatewayError("InvalidAccessKeyId.NotFound")
    if call.access_key_id in inactive:
        raise GatewayError("InvalidAccessKeyId.Inactive")
    try:
        signed_at = parse_datetime(call.timestamp, TIMESTAMP_FORMAT, TIMESTAMP_FIELDS, UTC).timestamp()
    except ValueError:
        raise GatewayError("InvalidTimeStamp.Format") from None
    if abs(now_s - signed_at) > tolerance_s:
        raise GatewayError("InvalidTimeStamp.Expired")
    if call.scheme == "v1":
        _verify_v1(req, call, secret)
    else:
        _verify_v3(req, call, secret)


def _require_pieces(call: Call) -> None:
    if call.scheme == "v3":
        if call.algorithm != V3_ALGORITHM:
            raise GatewayError(
                "UnsupportedSignatureMethod", f"Signature algorithm {call.algorithm!r} is not supported."
            )
        if not (call.access_key_id and call.signature and call.signed_headers):
            raise GatewayError(
                "IncompleteSignature", "The request signature does not conform to Aliyun standards."
            )
        pieces = (
            ("x-acs-action", call.action),
            ("x-acs-version", call.version),
            ("x-acs-date", call.timestamp),
            ("x-acs-signature-nonce", call.nonce),
        )
        for header, value in pieces:
            if not value:
                raise GatewayError("MissingParameter", f"Header {header} is mandatory for this action.")
        for name in V3_MUST_SIGN:
            if name not in call.signed_headers:
                raise GatewayError(
                    "IncompleteSignature",
                    f"The request signature does not conform to Aliyun standards: {name} is not signed.",
                )
        return
    for name, value in (
        ("Action", call.action),
        ("Version", call.version),
        ("AccessKeyId", call.access_key_id),
        ("Signature", call.signature),
        ("SignatureNonce", call.nonce),
        ("Timestamp", call.timestamp),
    ):
        if not value:
            raise GatewayError(f"Missing{name}", f"{name} is mandatory for this action.")
    if call.signature_method not in ("", "HMAC-SHA1"):
        raise GatewayError(
            "UnsupportedSignatureMethod", f"Signature method {call.signature_method!r} is not supported."
        )


def _mismatch(string_to_sign: str) -> GatewayError:
    return GatewayError("SignatureDoesNotMatch", SIGNATURE_MISMATCH + string_to_sign)


def _verify_v1(req: IncomingRequest, call: Call, secret: str) -> None:
    signed = {k: v for k, v in {**req.query, **req.form}.items() if k != "Signature"}
    string_to_sign = v1_string_to_sign(req.method, signed)
    if not hmac.compare_digest(v1_signature(string_to_sign, secret), call.signature):
        raise _mismatch(string_to_sign)


def _verify_v3(req: IncomingRequest, call: Call, secret: str) -> None:
    # The payload line is the hash of the body as received: a declared x-acs-content-sha256
    # that does not match the body makes the signature fail, as it should.
    payload_sha256 = hashlib.sha256(req.body).hexdigest()
    headers = {name: req.headers.get(name, "") for name in call.signed_headers}
    canonical, _ = v3_canonical_request(req.method, req.path or "/", req.query, headers, payload_sha256)
    string_to_sign = v3_string_to_sign(canonical)
    if not hmac.compare_digest(v3_signature(string_to_sign, secret), call.signature.lower()):
        raise _mismatch(string_to_sign)
