"""The Dypls vendor: request fields and models, the bulk fast path, responses, signing, the client.

Import from here (``from worker.vendor import DyplsClient, parse_bind_request``), never from the
modules inside, which are:

- :mod:`~worker.vendor.fields`: one check per kind of parameter value, each with its vendor code;
- :mod:`~worker.vendor.api_model`: the base model (API names as aliases, masked reprs);
- :mod:`~worker.vendor.forms`: the text forms of a request (API parameters, stored JSON, fingerprint);
- :mod:`~worker.vendor.requests`: the four request models;
- :mod:`~worker.vendor.refusals`: ``ValidationError`` → :class:`~worker.errors.InvalidRequestError`;
- :mod:`~worker.vendor.fastpath`: BindAxb validation without pydantic, for bulk producers;
- :mod:`~worker.vendor.responses`: the vendor's answers;
- :mod:`~worker.vendor.signing`: RPC signatures v1 and v3;
- :mod:`~worker.vendor.client`: the HTTP client and its transport error map.

The vendor's error codes and error classes stay in :mod:`worker.errors`.
"""

from worker.vendor.api_model import ApiModel
from worker.vendor.client import DyplsClient, map_transport_errors
from worker.vendor.fastpath import bind_params
from worker.vendor.fields import (
    CALL_TIMEOUT_API_RANGE_S,
    CALL_TIMEOUT_SDK_RANGE_S,
    CST,
    EXPIRATION_FORMAT,
    EXPIRE_DATE_ILLEGAL,
    INVALID_PARAMETERS,
    MAX_EXPIRATION_AHEAD,
    MIN_EXPIRATION_LEAD,
    MOBILE_NUMBER_ILLEGAL,
    NOT_A_NUMBER,
    CallRestrict,
    CallTimeoutWarning,
    FieldError,
    OperateType,
    format_expiration,
    normalize_phone,
    to_cst,
)
from worker.vendor.forms import (
    api_params,
    bind_default_key,
    bind_fingerprint,
    bind_request_json,
    bind_stored_forms,
)
from worker.vendor.refusals import parse_bind_request, parse_expiration, parse_request
from worker.vendor.requests import (
    ApiRequest,
    BindAxbRequest,
    QuerySubscriptionDetailRequest,
    UnbindSubscriptionRequest,
    UpdateSubscriptionRequest,
)
from worker.vendor.responses import (
    BindAxbResponse,
    QuerySubscriptionDetailResponse,
    SecretBindDetailDTO,
    SecretBindDTO,
    VendorResponse,
)
from worker.vendor.sender import USER_AGENT
from worker.vendor.signing import (
    API_VERSION,
    EMPTY_SHA256,
    V3_ALGORITHM,
    SignedRequest,
    canonical_query,
    new_nonce,
    percent_encode,
    sign_request,
    utc_timestamp,
    v1_signature,
    v1_string_to_sign,
    v3_canonical_request,
    v3_signature,
    v3_string_to_sign,
)

__all__ = [
    "API_VERSION",
    "CALL_TIMEOUT_API_RANGE_S",
    "CALL_TIMEOUT_SDK_RANGE_S",
    "CST",
    "EMPTY_SHA256",
    "EXPIRATION_FORMAT",
    "EXPIRE_DATE_ILLEGAL",
    "INVALID_PARAMETERS",
    "MAX_EXPIRATION_AHEAD",
    "MIN_EXPIRATION_LEAD",
    "MOBILE_NUMBER_ILLEGAL",
    "NOT_A_NUMBER",
    "USER_AGENT",
    "V3_ALGORITHM",
    "ApiModel",
    "ApiRequest",
    "BindAxbRequest",
    "BindAxbResponse",
    "CallRestrict",
    "CallTimeoutWarning",
    "DyplsClient",
    "FieldError",
    "OperateType",
    "QuerySubscriptionDetailRequest",
    "QuerySubscriptionDetailResponse",
    "SecretBindDTO",
    "SecretBindDetailDTO",
    "SignedRequest",
    "UnbindSubscriptionRequest",
    "UpdateSubscriptionRequest",
    "VendorResponse",
    "api_params",
    "bind_default_key",
    "bind_fingerprint",
    "bind_params",
    "bind_request_json",
    "bind_stored_forms",
    "canonical_query",
    "format_expiration",
    "map_transport_errors",
    "new_nonce",
    "normalize_phone",
    "parse_bind_request",
    "parse_expiration",
    "parse_request",
    "percent_encode",
    "sign_request",
    "to_cst",
    "utc_timestamp",
    "v1_signature",
    "v1_string_to_sign",
    "v3_canonical_request",
    "v3_signature",
    "v3_string_to_sign",
]
