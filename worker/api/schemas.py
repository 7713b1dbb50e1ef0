"""The JSON bodies of the HTTP API, as pydantic models: FastAPI checks their *types* and
publishes them in ``/openapi.json``; the values are checked by the producer's own validation
(:mod:`worker.vendor`), so a bad value gets the same field and vendor code as from Python.

Field names are the vendor's (``PoolKey``, ``PhoneNoA``, ...). Types are strict (a number sent
as a JSON number where the API wants text is refused, not guessed at) and unknown fields are
refused. The vendor's required parameters are optional *here* so that a missing one is
reported by the producer with its vendor code (``Expiration`` -> ``isv.EXPIRE_DATE_ILLEGAL``);
the published schema still marks them required.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.vendor import BindAxbRequest

MAX_BATCH_ITEMS = 1000
REQUIRED_BIND_FIELDS = ["PoolKey", "PhoneNoA", "PhoneNoB", "Expiration"]
EXAMPLE_BIND = {
    "PoolKey": "FC100000001",
    "PhoneNoA": "13800000000",
    "PhoneNoB": "13900000000",
    "Expiration": "2026-12-01 12:00:00",
    "OutId": "trip-42",
}
_STRICT = ConfigDict(extra="forbid", strict=True, populate_by_name=False)
_CALLBACK = (
    "POST the result here when the work ends (http or https; see the README's callback contract)."
    " Private and loopback addresses are refused unless AXB_CALLBACK_ALLOW_PRIVATE is set."
)


def _required(*names: str) -> Any:
    def extra(schema: dict[str, Any]) -> None:
        schema["required"] = list(names)

    return extra


class BindParameters(BaseModel):
    """The BindAxb parameters, with the vendor's names (see the vendor's BindAxb reference)."""

    model_config = _STRICT

    pool_key: str | None = Field(None, alias="PoolKey", description="number pool key, e.g. FC100000001")
    phone_no_a: str | None = Field(
        None, alias="PhoneNoA", description="phone A: mobile (11 digits) or landline with area code"
    )
    phone_no_b: str | None = Field(None, alias="PhoneNoB", description="phone B, not equal to A")
    expiration: str | None = Field(
        None,
        alias="Expiration",
        description="yyyy-MM-dd HH:mm:ss in China Standard Time (UTC+8), more than a minute ahead",
    )
    phone_no_x: str | None = Field(None, alias="PhoneNoX", description="bind on this X number")
    expect_city: str | None = Field(None, alias="ExpectCity", description="preferred city of X, no suffix")
    is_recording_enabled: bool | None = Field(None, alias="IsRecordingEnabled")
    out_id: str | None = Field(
        None, alias="OutId", description="business id; the idempotency key when no Idempotency-Key is given"
    )
    out_order_id: str | None = Field(None, alias="OutOrderId")
    call_display_type: int | None = Field(None, alias="CallDisplayType", description="fixed value 1")
    call_restrict: Literal["CONTROL_AX_DISABLE", "CONTROL_BX_DISABLE", "CONTROL_CLEAR_DISABLE"] | None = (
        Field(None, alias="CallRestrict")
    )
    call_timeout: int | None = Field(None, alias="CallTimeout", description="ring timeout, seconds")
    asr_status: bool | None = Field(None, alias="ASRStatus")
    asr_model_id: str | None = Field(None, alias="ASRModelId")
    ring_config: str | None = Field(None, alias="RingConfig", description="JSON text")
    dtmf_config: str | None = Field(None, alias="DtmfConfig", description="JSON text")

    def vendor_params(self) -> dict[str, Any]:
        """The BindAxb parameters given, by vendor name (what ``enqueue_bind`` takes)."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude=_NOT_VENDOR)


class BindBody(BindParameters):
    """``POST /v1/binds``: the BindAxb parameters plus an optional ``CallbackUrl``."""

    model_config = ConfigDict(
        **_STRICT, json_schema_extra=_required(*REQUIRED_BIND_FIELDS), title="BindRequest"
    )

    callback_url: str | None = Field(None, alias="CallbackUrl", description=_CALLBACK)


class BatchItem(BindParameters):
    """One bind of a batch: a bind request, plus its own ``IdempotencyKey`` if wanted. An item
    missing PoolKey, PhoneNoA, PhoneNoB or Expiration (or with a bad value) is rejected alone, by
    its index, with the vendor code; the others go on. A value of the wrong JSON type, or an
    unknown field, refuses the whole call (422)."""

    model_config = ConfigDict(**_STRICT, title="BatchItem")

    callback_url: str | None = Field(None, alias="CallbackUrl", description=_CALLBACK)
    idempotency_key: str | None = Field(
        None,
        alias="IdempotencyKey",
        description="this bind's idempotency key (default: OutId, else a hash of the request)",
    )


_NOT_VENDOR = {"callback_url", "idempotency_key"}


class BatchBody(BaseModel):
    """``POST /v1/binds:batch``: up to 1,000 binds."""

    model_config = ConfigDict(**_STRICT, title="BatchRequest")

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class ExtendBody(BaseModel):
    """``POST /v1/binds/{key}/extend``: the new Expiration."""

    model_config = ConfigDict(**_STRICT, title="ExtendRequest")

    expiration: str = Field(
        alias="Expiration",
        description="the new Expiration: yyyy-MM-dd HH:mm:ss (UTC+8), more than a minute ahead",
    )
    callback_url: str | None = Field(None, alias="CallbackUrl", description=_CALLBACK)


class UnbindBody(BaseModel):
    """``POST /v1/binds/{key}/unbind``: nothing is needed; a ``CallbackUrl`` may be given."""

    model_config = ConfigDict(**_STRICT, title="UnbindRequest")

    callback_url: str | None = Field(None, alias="CallbackUrl", description=_CALLBACK)


# --- answers ---------------------------------------------------------------------------------------


class Accepted(BaseModel):
    """A bind or operation taken in (202), or the same one found again (200)."""

    key: str = Field(description="the idempotency key; GET /v1/binds/{key} reads the result")
    status: str = Field(description="pending, retrying, succeeded, dead_lettered or cancelled")
    task_id: str
    created: bool = Field(description="true when this call created it")
    kind: Literal["bind", "unbind", "extend"] = "bind"


class BatchAccepted(BaseModel):
    index: int
    key: str
    task_id: str
    created: bool


class Problem(BaseModel):
    field: str = Field(description="the parameter at fault (vendor name), or where in the request")
    code: str = Field(description="the vendor code it would have caused (isv.*), or axb.* of this service")
    reason: str


class BatchRejected(BaseModel):
    index: int
    Code: str
    Message: str
    Problems: list[Problem]


class BatchResult(BaseModel):
    accepted: list[BatchAccepted]
    rejected: list[BatchRejected]
    created: int = Field(description="how many of the accepted binds this call created")


class SecretBindDocument(BaseModel):
    model_config = ConfigDict(extra="allow", title="SecretBindDTO")

    SecretNo: str | None = None
    SubsId: str | None = None
    Extension: str | None = None


class ResultDocument(BaseModel):
    """A bind's or an operation's result: the same JSON as the completion callback's body."""

    model_config = ConfigDict(extra="allow", title="Result")

    key: str
    kind: Literal["bind", "unbind", "extend"]
    status: str
    state: str | None = Field(None, description="binds: bound, unbound, expired, pending, ...")
    outcome: str | None = Field(None, description="operations: unbound, already_gone, extended, ...")
    attempts: int | None = None
    code: str | None = None
    message: str | None = None
    request: dict[str, Any] | None = None
    secret_bind_dto: SecretBindDocument | None = Field(None, alias="SecretBindDTO")
    possible_orphan: bool | None = Field(
        None,
        description="binds: true when a first copy of the bind may have left a binding at the vendor"
        " (an ambiguous outcome: listed in the possible-orphans ledger until its Expiration)",
    )
    updated_at: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: a machine-readable code, a message, and the fields at fault."""

    model_config = ConfigDict(title="Error")

    Code: str = Field(
        description="e.g. isv.MOBILE_NUMBER_ILLEGAL, axb.IDEMPOTENCY_CONFLICT, axb.UNAUTHORIZED"
    )
    Message: str
    Problems: list[Problem] = Field(default_factory=list)


class Health(BaseModel):
    status: str


def bind_parameter_names() -> set[str]:
    """The vendor names :class:`BindParameters` takes (a test keeps them equal to the model's)."""
    return {f.alias or n for n, f in BindParameters.model_fields.items()}


def model_parameter_names() -> set[str]:
    return {f.alias or n for n, f in BindAxbRequest.model_fields.items()}
