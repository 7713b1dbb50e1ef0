"""The four Dypls request models: BindAxb, UnbindSubscription, QuerySubscriptionDetail, UpdateSubscription.

Each field's type names its rule (:mod:`worker.vendor.fields`): ``PoolKey`` is a
:data:`PoolKeyText`, a phone a :data:`RequiredPhone`, and so on, so a rule is attached once
and every model that has the field applies the same check. Values may arrive as CSV strings:
``"true"``/``"0"`` for booleans, ``"15"`` for integers, and an empty cell for an optional
parameter means "not set". Requests are frozen and refuse unknown parameters; turn pydantic's
``ValidationError`` into the one error clients see with :func:`worker.vendor.parse_request`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from worker.vendor.api_model import ApiModel
from worker.vendor.fields import (
    INVALID_PARAMETERS,
    REQUIRED,
    CallRestrict,
    CallTimeoutWarning,
    FieldError,
    OperateType,
    call_timeout_warning,
    check_bool,
    check_call_display_type,
    check_call_restrict,
    check_call_timeout,
    check_city,
    check_expiration,
    check_json_text,
    check_operate_type,
    check_optional_phone,
    check_optional_text,
    check_pool_key,
    check_required_phone,
    check_required_text,
    format_expiration,
    is_blank,
)
from worker.vendor.forms import api_params, bind_default_key, bind_fingerprint

PoolKeyText = Annotated[str, BeforeValidator(check_pool_key)]
RequiredPhone = Annotated[str, BeforeValidator(check_required_phone)]
OptionalPhone = Annotated[str | None, BeforeValidator(check_optional_phone)]
RequiredId = Annotated[str, BeforeValidator(check_required_text)]
OptionalId = Annotated[str | None, BeforeValidator(check_optional_text)]
OptionalCity = Annotated[str | None, BeforeValidator(check_city)]
OptionalFlag = Annotated[bool | None, BeforeValidator(check_bool)]
OptionalDisplayType = Annotated[int | None, BeforeValidator(check_call_display_type)]
OptionalRestrict = Annotated[CallRestrict | None, BeforeValidator(check_call_restrict)]
OptionalJson = Annotated[str | None, BeforeValidator(check_json_text)]
OperateTypeText = Annotated[OperateType, BeforeValidator(check_operate_type)]


def _checks_future(info: ValidationInfo) -> tuple[bool, Any]:
    """``(check_future, now)`` from the validation context :func:`parse_request` passes."""
    ctx = info.context if isinstance(info.context, Mapping) else {}
    return bool(ctx.get("check_future", True)), ctx.get("now")


class ApiRequest(ApiModel):
    """A request the worker sends: frozen, unknown parameters refused."""

    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True, frozen=True, extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        """API names, set fields only, JSON-friendly; :func:`parse_request` loads it back."""
        out: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return out

    def to_api_params(self) -> dict[str, str]:
        """The query parameters to sign and send: API names, set fields only, bools ``true``/``false``."""
        return api_params(self.to_json_dict())


# --- BindAxb -------------------------------------------------------------------------------------------


class BindAxbRequest(ApiRequest):
    """One BindAxb call: binds A and B to an X number from the pool ``PoolKey`` until ``Expiration``."""

    pool_key: PoolKeyText = Field(alias="PoolKey")
    phone_no_a: RequiredPhone = Field(alias="PhoneNoA")
    phone_no_b: RequiredPhone = Field(alias="PhoneNoB")
    expiration: datetime = Field(alias="Expiration")
    phone_no_x: OptionalPhone = Field(default=None, alias="PhoneNoX")
    expect_city: OptionalCity = Field(default=None, alias="ExpectCity")
    is_recording_enabled: OptionalFlag = Field(default=None, alias="IsRecordingEnabled")
    out_id: OptionalId = Field(default=None, alias="OutId")
    out_order_id: OptionalId = Field(default=None, alias="OutOrderId")
    call_display_type: OptionalDisplayType = Field(default=None, alias="CallDisplayType")
    call_restrict: OptionalRestrict = Field(default=None, alias="CallRestrict")
    call_timeout: int | None = Field(default=None, alias="CallTimeout")
    asr_status: OptionalFlag = Field(default=None, alias="ASRStatus")
    asr_model_id: OptionalId = Field(default=None, alias="ASRModelId")
    ring_config: OptionalJson = Field(default=None, alias="RingConfig")
    dtmf_config: OptionalJson = Field(default=None, alias="DtmfConfig")

    @field_validator("expiration", mode="before")
    @classmethod
    def _v_expiration(cls, v: Any, info: ValidationInfo) -> datetime:
        check_future, now = _checks_future(info)
        return check_expiration(v, check_future=check_future, now=now)

    @field_validator("call_timeout", mode="before")
    @classmethod
    def _v_timeout(cls, v: Any) -> int | None:
        seconds = check_call_timeout(v)
        warning = call_timeout_warning(seconds)
        if warning is not None:
            warnings.warn(warning, CallTimeoutWarning, stacklevel=2)
        return seconds

    @model_validator(mode="after")
    def _v_a_differs_from_b(self) -> BindAxbRequest:
        if self.phone_no_a == self.phone_no_b:
            raise FieldError(INVALID_PARAMETERS, "must differ from PhoneNoA", field="PhoneNoB")
        return self

    @field_serializer("expiration", when_used="json")
    def _s_expiration(self, value: datetime) -> str:
        return format_expiration(value)

    # --- derived views -----------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical API parameters: equal exactly when the vendor call is equal."""
        return bind_fingerprint(self.to_json_dict())

    def default_idempotency_key(self) -> str:
        """``OutId`` if set, else ``h:`` + 32 hex digits of SHA-256(PoolKey|A|B|Expiration)."""
        return bind_default_key(self.to_json_dict())


# --- UnbindSubscription / QuerySubscriptionDetail / UpdateSubscription -------------------------------


class UnbindSubscriptionRequest(ApiRequest):
    """Ends a binding; ``isv.SUBS_NOT_EXIST`` in the answer means it was already gone."""

    pool_key: PoolKeyText = Field(alias="PoolKey")
    secret_no: RequiredPhone = Field(alias="SecretNo")
    subs_id: RequiredId = Field(alias="SubsId")


class QuerySubscriptionDetailRequest(ApiRequest):
    """Looks a binding up by its X number and subscription id."""

    pool_key: PoolKeyText = Field(alias="PoolKey")
    phone_no_x: RequiredPhone = Field(alias="PhoneNoX")
    subs_id: RequiredId = Field(alias="SubsId")


# Which parameter each OperateType needs (updateOutId may clear OutId, so it needs none).
_UPDATE_NEEDS: dict[str, str] = {
    "updateNoA": "phone_no_a",
    "updateNoB": "phone_no_b",
    "updateExpire": "expiration",
    "updateAxgGroup": "group_id",
    "updateCallRestrict": "call_restrict",
    "updateCallDisplayType": "call_display_type",
    "updateIsRecordingEnabled": "is_recording_enabled",
}


class UpdateSubscriptionRequest(ApiRequest):
    """Changes one aspect of a binding, chosen by ``OperateType`` (``updateExpire`` + ``Expiration``, ...)."""

    pool_key: PoolKeyText = Field(alias="PoolKey")
    subs_id: RequiredId = Field(alias="SubsId")
    phone_no_x: RequiredPhone = Field(alias="PhoneNoX")
    operate_type: OperateTypeText = Field(alias="OperateType")
    expiration: datetime | None = Field(default=None, alias="Expiration")
    phone_no_a: OptionalPhone = Field(default=None, alias="PhoneNoA")
    phone_no_b: OptionalPhone = Field(default=None, alias="PhoneNoB")
    out_id: OptionalId = Field(default=None, alias="OutId")
    group_id: OptionalId = Field(default=None, alias="GroupId")
    call_restrict: OptionalRestrict = Field(default=None, alias="CallRestrict")
    call_display_type: OptionalDisplayType = Field(default=None, alias="CallDisplayType")
    is_recording_enabled: OptionalFlag = Field(default=None, alias="IsRecordingEnabled")
    asr_status: OptionalFlag = Field(default=None, alias="ASRStatus")
    asr_model_id: OptionalId = Field(default=None, alias="ASRModelId")
    ring_config: OptionalJson = Field(default=None, alias="RingConfig")

    @field_validator("expiration", mode="before")
    @classmethod
    def _v_expiration(cls, v: Any, info: ValidationInfo) -> datetime | None:
        if is_blank(v):
            return None
        check_future, now = _checks_future(info)
        return check_expiration(v, check_future=check_future, now=now)

    @model_validator(mode="after")
    def _v_operation_has_its_parameter(self) -> UpdateSubscriptionRequest:
        needed = _UPDATE_NEEDS.get(self.operate_type)
        if needed is not None and getattr(self, needed) is None:
            alias = type(self).model_fields[needed].alias or needed
            raise FieldError(
                INVALID_PARAMETERS, f"{REQUIRED} for OperateType={self.operate_type}", field=alias
            )
        return self

    @field_serializer("expiration", when_used="json")
    def _s_expiration(self, value: datetime | None) -> str | None:
        return None if value is None else format_expiration(value)
