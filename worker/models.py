"""Pydantic models for the Dypls API: requests validated at the door, responses parsed.

Field names are snake_case with the API's own names as aliases, so CSV/JSON rows that use
``PoolKey``/``PhoneNoA``/... load directly. Validation catches what the vendor would reject and
reports it as :class:`~worker.errors.InvalidRequestError`, naming the field and the vendor code
(``PhoneNoA: not a mobile or landline number (isv.MOBILE_NUMBER_ILLEGAL)``). No message and no
``repr`` ever shows a full phone number.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from worker.errors import FieldProblem, InvalidRequestError
from worker.masking import mask_number, mask_obj

CST = timezone(timedelta(hours=8), "CST")
EXPIRATION_FORMAT = "%Y-%m-%d %H:%M:%S"
MIN_LEAD = timedelta(minutes=1)

ILLEGAL_NUMBER = "isv.MOBILE_NUMBER_ILLEGAL"
ILLEGAL_EXPIRE = "isv.EXPIRE_DATE_ILLEGAL"
INVALID = "isv.INVALID_PARAMETERS"

_MOBILE = re.compile(r"1[3-9]\d{9}")
_LANDLINE = re.compile(r"0\d{9,11}")
_POOL_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PHONE_FIELDS = ("PhoneNoA", "PhoneNoB", "PhoneNoX")

CallRestrict = Literal["CONTROL_AX_DISABLE", "CONTROL_BX_DISABLE", "CONTROL_CLEAR_DISABLE"]


class CallTimeoutWarning(UserWarning):
    """CallTimeout outside the SDK's 5-20 s (the API accepts 0-180)."""


class _Problem(ValueError):
    """Raised inside validators: carries the vendor code (the field comes from pydantic's loc)."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(reason)


def normalize_phone(value: str) -> str | None:
    """Digits of a mobile or landline number, ``+86``/``86``/``0086`` and spaces removed; None if illegal."""
    text = value.replace(" ", "").replace("\u00a0", "")
    candidates = [text]
    for prefix in ("+86", "0086", "86"):
        if text.startswith(prefix):
            candidates.append(text[len(prefix) :])
    for c in candidates:
        if _MOBILE.fullmatch(c) or _LANDLINE.fullmatch(c):
            return c
    return None


def format_expiration(dt: datetime) -> str:
    return dt.astimezone(CST).strftime(EXPIRATION_FORMAT)


def _parse_expiration(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=CST) if value.tzinfo is None else value.astimezone(CST)
    if not isinstance(value, str):
        raise _Problem(ILLEGAL_EXPIRE, "must be a 'yyyy-MM-dd HH:mm:ss' string (UTC+8)")
    text = value.strip()
    try:
        return datetime.strptime(text, EXPIRATION_FORMAT).replace(tzinfo=CST)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _Problem(ILLEGAL_EXPIRE, "must be 'yyyy-MM-dd HH:mm:ss' (UTC+8)") from None
    return parsed.replace(tzinfo=CST) if parsed.tzinfo is None else parsed.astimezone(CST)


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _to_bool(value: Any) -> bool | None:
    value = _blank_to_none(value)
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise _Problem(INVALID, "must be true or false")


def _to_int(value: Any) -> int | None:
    value = _blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Problem(INVALID, "must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,6}", value.strip()):
        return int(value.strip())
    raise _Problem(INVALID, "must be a whole number")


class _Masked(BaseModel):
    """Base whose repr masks phone numbers."""

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_obj(value) if isinstance(value, str | dict | list) else value


class BindAxbRequest(_Masked):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid", str_strip_whitespace=True)

    pool_key: str = Field(alias="PoolKey")
    phone_no_a: str = Field(alias="PhoneNoA")
    phone_no_b: str = Field(alias="PhoneNoB")
    expiration: datetime = Field(alias="Expiration")
    phone_no_x: str | None = Field(default=None, alias="PhoneNoX")
    expect_city: str | None = Field(default=None, alias="ExpectCity", max_length=32)
    is_recording_enabled: bool | None = Field(default=None, alias="IsRecordingEnabled")
    out_id: str | None = Field(default=None, alias="OutId", max_length=64)
    out_order_id: str | None = Field(default=None, alias="OutOrderId", max_length=64)
    call_display_type: int | None = Field(default=None, alias="CallDisplayType")
    call_restrict: CallRestrict | None = Field(default=None, alias="CallRestrict")
    call_timeout: int | None = Field(default=None, alias="CallTimeout")
    asr_status: bool | None = Field(default=None, alias="ASRStatus")
    asr_model_id: str | None = Field(default=None, alias="ASRModelId", max_length=64)
    ring_config: str | None = Field(default=None, alias="RingConfig", max_length=1024)
    dtmf_config: str | None = Field(default=None, alias="DtmfConfig", max_length=1024)

    @field_validator(
        "phone_no_x",
        "expect_city",
        "out_id",
        "out_order_id",
        "call_restrict",
        "asr_model_id",
        "ring_config",
        "dtmf_config",
        mode="before",
    )
    @classmethod
    def _blank_optional(cls, v: Any) -> Any:
        return _blank_to_none(v)

    @field_validator("pool_key", mode="before")
    @classmethod
    def _pool_key(cls, v: Any) -> str:
        if not isinstance(v, str) or not _POOL_KEY.fullmatch(v.strip()):
            raise _Problem(INVALID, "must be 1-64 letters, digits, '_' or '-'")
        return v.strip()

    @field_validator("phone_no_a", "phone_no_b", "phone_no_x", mode="before")
    @classmethod
    def _phone(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            raise _Problem(ILLEGAL_NUMBER, "not a mobile or landline number")
        number = normalize_phone(v)
        if number is None:
            raise _Problem(ILLEGAL_NUMBER, "not a mobile or landline number")
        return number

    @field_validator("expiration", mode="before")
    @classmethod
    def _expiration(cls, v: Any, info: ValidationInfo) -> datetime:
        dt = _parse_expiration(v)
        ctx = info.context or {}
        if ctx.get("check_future", True):
            now = ctx.get("now") or datetime.now(UTC)
            if dt - now <= MIN_LEAD:
                raise _Problem(ILLEGAL_EXPIRE, "must be more than 1 minute from now (UTC+8)")
        return dt

    @field_validator("is_recording_enabled", "asr_status", mode="before")
    @classmethod
    def _bools(cls, v: Any) -> bool | None:
        return _to_bool(v)

    @field_validator("call_display_type", mode="before")
    @classmethod
    def _display(cls, v: Any) -> int | None:
        n = _to_int(v)
        if n is not None and n != 1:
            raise _Problem(INVALID, "must be 1")
        return n

    @field_validator("call_timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> int | None:
        n = _to_int(v)
        if n is None:
            return None
        if not 0 <= n <= 180:
            raise _Problem(INVALID, "must be 0-180 seconds")
        if not 5 <= n <= 20:
            warnings.warn(f"CallTimeout={n} is outside the SDK's 5-20 s", CallTimeoutWarning, stacklevel=2)
        return n

    @field_validator("expect_city")
    @classmethod
    def _city(cls, v: str | None) -> str | None:
        if v is not None and v.endswith("市"):
            raise _Problem(INVALID, "city name without the suffix (北京, not 北京市)")
        return v

    @field_validator("ring_config", "dtmf_config")
    @classmethod
    def _json_text(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                json.loads(v)
            except ValueError:
                raise _Problem(INVALID, "must be JSON text") from None
        return v

    @model_validator(mode="after")
    def _a_differs_from_b(self) -> BindAxbRequest:
        if self.phone_no_a == self.phone_no_b:
            raise ValueError("PhoneNoB:must differ from PhoneNoA")
        return self

    # --- output ----------------------------------------------------------------------------------

    def to_api_params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump(by_alias=True, exclude_none=True).items():
            if isinstance(value, bool):
                out[name] = "true" if value else "false"
            elif isinstance(value, datetime):
                out[name] = format_expiration(value)
            else:
                out[name] = str(value)
        return out

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True)
        out["Expiration"] = format_expiration(self.expiration)
        return out

    def masked(self) -> dict[str, Any]:
        out = self.to_json_dict()
        for name in _PHONE_FIELDS:
            if out.get(name):
                out[name] = mask_number(out[name])
        return out

    def fingerprint(self) -> str:
        canonical = json.dumps(self.to_api_params(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def default_idempotency_key(self) -> str:
        if self.out_id:
            return self.out_id
        raw = "|".join([self.pool_key, self.phone_no_a, self.phone_no_b, format_expiration(self.expiration)])
        return "h:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


_ALIASES = {name: f.alias or name for name, f in BindAxbRequest.model_fields.items()}
_DEFAULT_CODE = {
    "PhoneNoA": ILLEGAL_NUMBER,
    "PhoneNoB": ILLEGAL_NUMBER,
    "PhoneNoX": ILLEGAL_NUMBER,
    "Expiration": ILLEGAL_EXPIRE,
}


def _problems(exc: ValidationError) -> list[FieldProblem]:
    out: list[FieldProblem] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(x) for x in err.get("loc", ())]
        field = _ALIASES.get(loc[0], loc[0]) if loc else ""
        cause = (err.get("ctx") or {}).get("error")
        etype = err.get("type", "")
        if isinstance(cause, _Problem):
            out.append(FieldProblem(field, cause.code, cause.reason))
        elif etype == "missing":
            out.append(FieldProblem(field, _DEFAULT_CODE.get(field, INVALID), "is required"))
        elif etype == "extra_forbidden":
            out.append(FieldProblem(field, INVALID, "is not a BindAxb parameter"))
        elif etype == "literal_error":
            out.append(
                FieldProblem(
                    field, INVALID, "must be CONTROL_AX_DISABLE, CONTROL_BX_DISABLE or CONTROL_CLEAR_DISABLE"
                )
            )
        elif etype == "string_too_long":
            limit = (err.get("ctx") or {}).get("max_length")
            out.append(FieldProblem(field, INVALID, f"longer than {limit} characters"))
        elif not loc and isinstance(cause, ValueError) and ":" in str(cause):
            name, _, reason = str(cause).partition(":")
            out.append(FieldProblem(name, INVALID, reason))
        else:
            out.append(FieldProblem(field, _DEFAULT_CODE.get(field, INVALID), f"invalid ({etype})"))
    return out


def parse_bind_request(
    data: Mapping[str, Any] | BindAxbRequest, *, check_future: bool = True, now: datetime | None = None
) -> BindAxbRequest:
    """Validate ``data`` (API or field names) into a :class:`BindAxbRequest` or raise
    :class:`InvalidRequestError` naming each bad field and the vendor code it would cause."""
    if isinstance(data, BindAxbRequest):
        if not check_future:
            return data
        data = data.to_json_dict()
    if not isinstance(data, Mapping):
        raise InvalidRequestError(
            [FieldProblem("request", INVALID, "must be a mapping of BindAxb parameters")]
        )
    try:
        return BindAxbRequest.model_validate(dict(data), context={"check_future": check_future, "now": now})
    except ValidationError as exc:
        problems = _problems(exc)
    raise InvalidRequestError(problems)


# --- responses -------------------------------------------------------------------------------------


class SecretBindDTO(_Masked):
    model_config = ConfigDict(populate_by_name=True, extra="allow", frozen=True)

    secret_no: str = Field(alias="SecretNo")
    subs_id: str = Field(alias="SubsId")
    extension: str | None = Field(default="", alias="Extension")


class VendorResponse(_Masked):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    request_id: str = Field(default="", alias="RequestId")
    code: str = Field(default="", alias="Code")
    message: str | None = Field(default="", alias="Message")


class BindAxbResponse(VendorResponse):
    secret_bind_dto: SecretBindDTO | None = Field(default=None, alias="SecretBindDTO")


class SecretBindDetailDTO(_Masked):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    status: int | None = Field(default=None, alias="Status")
    expire_date: str | None = Field(default=None, alias="ExpireDate")
    phone_no_a: str | None = Field(default=None, alias="PhoneNoA")
    phone_no_b: str | None = Field(default=None, alias="PhoneNoB")
    phone_no_x: str | None = Field(default=None, alias="PhoneNoX")
    gmt_create: str | None = Field(default=None, alias="GmtCreate")
    need_record: bool | None = Field(default=None, alias="NeedRecord")
    subs_id: str | None = Field(default=None, alias="SubsId")


class QuerySubscriptionDetailResponse(VendorResponse):
    secret_bind_detail_dto: SecretBindDetailDTO | None = Field(default=None, alias="SecretBindDetailDTO")


class UnbindSubscriptionRequest(_Masked):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    pool_key: str = Field(alias="PoolKey", min_length=1)
    secret_no: str = Field(alias="SecretNo", min_length=1)
    subs_id: str = Field(alias="SubsId", min_length=1)

    def to_api_params(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.model_dump(by_alias=True).items()}


class UpdateSubscriptionRequest(_Masked):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")

    pool_key: str = Field(alias="PoolKey", min_length=1)
    subs_id: str = Field(alias="SubsId", min_length=1)
    phone_no_x: str = Field(alias="PhoneNoX", min_length=1)
    operate_type: str = Field(alias="OperateType", min_length=1)
    expiration: datetime | None = Field(default=None, alias="Expiration")
    phone_no_a: str | None = Field(default=None, alias="PhoneNoA")
    phone_no_b: str | None = Field(default=None, alias="PhoneNoB")
    out_id: str | None = Field(default=None, alias="OutId")

    @field_validator("expiration", mode="before")
    @classmethod
    def _expiration(cls, v: Any) -> datetime | None:
        return None if v is None else _parse_expiration(v)

    def to_api_params(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.model_dump(by_alias=True, exclude_none=True).items():
            out[name] = format_expiration(value) if isinstance(value, datetime) else str(value)
        return out
