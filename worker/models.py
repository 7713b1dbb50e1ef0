"""Pydantic models for the Dypls API: requests validated at the door, responses parsed.

Field names are snake_case with the API's own names as aliases, so CSV/JSON rows that use
``PoolKey``/``PhoneNoA``/... load directly (snake_case names work too). Values may arrive as
CSV strings: ``"true"``/``"0"`` for booleans, ``"15"`` for integers, and an empty cell for an
optional parameter means "not set".

Validation catches what the vendor would reject and :func:`parse_bind_request` reports it as
:class:`~worker.errors.InvalidRequestError`, naming each field by its API name and the vendor
code the call would have earned::

    PhoneNoA: not a mobile or landline number (isv.MOBILE_NUMBER_ILLEGAL)

Codes: a bad number is ``isv.MOBILE_NUMBER_ILLEGAL``, a bad or too-close Expiration
``isv.EXPIRE_DATE_ILLEGAL``, everything else ``isv.INVALID_PARAMETERS``. A required field that
is missing, ``None`` or blank gets the code of its own format check (``is required``): phones
``isv.MOBILE_NUMBER_ILLEGAL``, Expiration ``isv.EXPIRE_DATE_ILLEGAL``, the rest
``isv.INVALID_PARAMETERS``.

Numbers: every kind of whitespace is removed, then a ``+86``/``0086``/``86`` prefix is dropped
when what remains is a number (``+86 0571 8899 2688``; ``+86 571 8899 2688``, the E.164 form
without the trunk ``0``, becomes ``057188992688`` too). Hyphens are never stripped: the vendor
calls ``0571-88992688`` illegal, and so do we. Only ASCII digits count.

No error message, no ``repr``/``str`` and no :meth:`masked` view ever shows a full phone number;
pydantic's own errors hide their input (``hide_input_in_errors``) and are never chained.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from json.encoder import encode_basestring as _json_str
from typing import Any, Literal, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from worker.errors import FieldProblem, InvalidRequestError
from worker.masking import mask_number, mask_obj, mask_text

__all__ = [
    "CST",
    "EXPIRATION_FORMAT",
    "MIN_EXPIRATION_LEAD",
    "BindAxbRequest",
    "BindAxbResponse",
    "CallRestrict",
    "CallTimeoutWarning",
    "OperateType",
    "QuerySubscriptionDetailRequest",
    "QuerySubscriptionDetailResponse",
    "SecretBindDTO",
    "SecretBindDetailDTO",
    "UnbindSubscriptionRequest",
    "UpdateSubscriptionRequest",
    "VendorResponse",
    "format_expiration",
    "normalize_phone",
    "parse_bind_request",
    "parse_expiration",
    "parse_request",
    "to_cst",
]

CST = timezone(timedelta(hours=8), "CST")
"""China Standard Time (UTC+8): the zone of every ``Expiration`` the vendor reads or writes."""
EXPIRATION_FORMAT = "%Y-%m-%d %H:%M:%S"
MIN_EXPIRATION_LEAD = timedelta(minutes=1)
"""An Expiration must lie *more* than this after now."""
MAX_EXPIRATION_AHEAD = timedelta(days=366)
"""An Expiration may lie at most this far ahead: records and histories holding phone numbers live
until the Expiration (plus ``AXB_RESULT_TTL_EXTRA_S``), so this bounds how long they are kept."""
TOO_FAR_AHEAD = "must be at most 366 days from now (UTC+8)"

CALL_TIMEOUT_API_RANGE_S = (0, 180)
CALL_TIMEOUT_SDK_RANGE_S = (5, 20)
MAX_ID_LENGTH = 64  # OutId, OutOrderId, ASRModelId, SubsId, GroupId
MAX_CONFIG_LENGTH = 1024  # RingConfig, DtmfConfig
MAX_CITY_LENGTH = 32

MOBILE_NUMBER_ILLEGAL = "isv.MOBILE_NUMBER_ILLEGAL"
EXPIRE_DATE_ILLEGAL = "isv.EXPIRE_DATE_ILLEGAL"
INVALID_PARAMETERS = "isv.INVALID_PARAMETERS"

CallRestrict = Literal["CONTROL_AX_DISABLE", "CONTROL_BX_DISABLE", "CONTROL_CLEAR_DISABLE"]
OperateType = Literal[
    "updateNoA",
    "updateNoB",
    "updateExpire",
    "updateAxgGroup",
    "updateCallRestrict",
    "updateCallDisplayType",
    "updateOutId",
    "updateIsRecordingEnabled",
]
_CALL_RESTRICTS: tuple[str, ...] = get_args(CallRestrict)
_OPERATE_TYPES: tuple[str, ...] = get_args(OperateType)

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_LANDLINE = re.compile(r"0[0-9]{9,11}")
_NUMBER = re.compile(r"1[3-9][0-9]{9}|0[0-9]{9,11}")  # _MOBILE or _LANDLINE
# After +86 a landline drops its trunk 0: Beijing 10, then 2x and 3xx-9xx area codes.
_NATIONAL_LANDLINE = re.compile(r"(?:10|[2-9][0-9])[0-9]{7,9}")
_COUNTRY_PREFIXES = ("+86", "0086", "86")
_POOL_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,9}")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

# Fields whose value is a phone number: masked whole in every repr.
_NUMBER_FIELDS = frozenset({"phone_no_a", "phone_no_b", "phone_no_x", "secret_no"})

NOT_A_NUMBER = "not a mobile or landline number"
REQUIRED = "is required"


class CallTimeoutWarning(UserWarning):
    """CallTimeout is inside the API's 0-180 s but outside the SDK's documented 5-20 s."""


class _Problem(ValueError):
    """Raised inside validators: carries the vendor code and a reason that never quotes input.

    ``field`` is only needed from model-level validators (pydantic gives field validators a loc).
    """

    def __init__(self, code: str, reason: str, *, field: str | None = None) -> None:
        self.code = code
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


# --- helpers ---------------------------------------------------------------------------------------


def normalize_phone(value: str) -> str | None:
    """The digits of a mobile (``1[3-9]`` + 9) or landline (``0`` + 9-11) number, or None if illegal.

    Whitespace anywhere goes, then a ``+86``/``0086``/``86`` prefix when what remains is a number
    (restoring a landline's trunk ``0``). Hyphens, letters and non-ASCII digits make it illegal.
    """
    if not isinstance(value, str):
        return None
    if _NUMBER.fullmatch(value):  # already bare digits (the common case): nothing to remove
        return value
    text = "".join(value.split())
    if _is_number(text):
        return text
    for prefix in _COUNTRY_PREFIXES:
        if text.startswith(prefix):
            rest = text[len(prefix) :]
            if _is_number(rest):
                return rest
            if _NATIONAL_LANDLINE.fullmatch(rest):
                return "0" + rest
    return None


def _is_number(text: str) -> bool:
    return bool(_MOBILE.fullmatch(text) or _LANDLINE.fullmatch(text))


def to_cst(moment: datetime) -> datetime:
    """``moment`` in UTC+8, whole seconds; a naive datetime is taken to be UTC+8 already."""
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=CST)
    elif moment.tzinfo is not CST:
        moment = moment.astimezone(CST)
    return moment.replace(microsecond=0)


def format_expiration(moment: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in UTC+8, as the vendor wants it (a naive datetime is UTC+8)."""
    t = to_cst(moment)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


def _parse_expiration(value: Any) -> datetime:
    """A ``yyyy-MM-dd HH:mm:ss`` (UTC+8) or ISO 8601 string, or a datetime, as an aware UTC+8 datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.strptime(text, EXPIRATION_FORMAT)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise _Problem(EXPIRE_DATE_ILLEGAL, "must be 'yyyy-MM-dd HH:mm:ss' (UTC+8)") from None
    else:
        raise _Problem(EXPIRE_DATE_ILLEGAL, "must be a 'yyyy-MM-dd HH:mm:ss' string (UTC+8) or a datetime")
    try:
        return to_cst(moment)
    except (OverflowError, ValueError):
        raise _Problem(EXPIRE_DATE_ILLEGAL, "is out of range") from None


def _check_future(moment: datetime, info: ValidationInfo) -> None:
    """Demand ``moment`` lie more than a minute after now, unless the context says not to."""
    ctx = info.context if isinstance(info.context, Mapping) else {}
    if not ctx.get("check_future", True):
        return
    now = ctx.get("now")
    if not isinstance(now, datetime):
        now = datetime.now(UTC)
    elif now.utcoffset() is None:
        now = now.replace(tzinfo=CST)
    if moment - now <= MIN_EXPIRATION_LEAD:
        raise _Problem(EXPIRE_DATE_ILLEGAL, "must be more than 1 minute from now (UTC+8)")
    if moment - now > MAX_EXPIRATION_AHEAD:
        raise _Problem(EXPIRE_DATE_ILLEGAL, TOO_FAR_AHEAD)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _phone(value: Any, *, required: bool) -> str | None:
    if _is_blank(value):
        if required:
            raise _Problem(MOBILE_NUMBER_ILLEGAL, REQUIRED)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    number = normalize_phone(value) if isinstance(value, str) else None
    if number is None:
        raise _Problem(MOBILE_NUMBER_ILLEGAL, NOT_A_NUMBER)
    return number


def _text(value: Any, *, required: bool = False, max_length: int = MAX_ID_LENGTH) -> str | None:
    """A single-line string (ints accepted as their digits); blank means not set."""
    if _is_blank(value):
        if required:
            raise _Problem(INVALID_PARAMETERS, REQUIRED)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Problem(INVALID_PARAMETERS, "must be text")
    text = value.strip()
    if len(text) > max_length:
        raise _Problem(INVALID_PARAMETERS, f"longer than {max_length} characters")
    # Cc and Cs are not printable: a printable text (the common case) needs no closer look.
    if not text.isprintable() and any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise _Problem(INVALID_PARAMETERS, "contains control characters")
    return text


def _pool_key(value: Any) -> str:
    if _is_blank(value):
        raise _Problem(INVALID_PARAMETERS, REQUIRED)
    if not isinstance(value, str) or not _POOL_KEY.fullmatch(value.strip()):
        raise _Problem(INVALID_PARAMETERS, "must be 1-64 letters, digits, '_' or '-'")
    return value.strip()


def _json_text(value: Any) -> str | None:
    if _is_blank(value):
        return None
    if not isinstance(value, str):
        raise _Problem(INVALID_PARAMETERS, "must be JSON text")
    if len(value) > MAX_CONFIG_LENGTH:
        raise _Problem(INVALID_PARAMETERS, f"longer than {MAX_CONFIG_LENGTH} characters")
    if not value.isprintable() and any(unicodedata.category(c) == "Cs" for c in value):
        raise _Problem(INVALID_PARAMETERS, "must be JSON text")
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        raise _Problem(INVALID_PARAMETERS, "must be JSON text") from None
    return value


def _bool(value: Any) -> bool | None:
    """``True``/``False``, or CSV text ``true``/``false``/``1``/``0``/``yes``/``no`` (any case)."""
    if _is_blank(value) or isinstance(value, bool):
        return value if isinstance(value, bool) else None
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Problem(INVALID_PARAMETERS, "must be true or false")


def _int(value: Any) -> int | None:
    """An int, a whole float, or CSV text like ``"15"``; blank means not set."""
    if _is_blank(value):
        return None
    if isinstance(value, bool):
        raise _Problem(INVALID_PARAMETERS, "must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise _Problem(INVALID_PARAMETERS, "must be a whole number")


def _call_display_type(value: Any) -> int | None:
    number = _int(value)
    if number is not None and number != 1:
        raise _Problem(INVALID_PARAMETERS, "must be 1 (the only value the API allows)")
    return number


def _call_restrict(value: Any) -> str | None:
    if _is_blank(value):
        return None
    text = value.strip() if isinstance(value, str) else None
    if text not in _CALL_RESTRICTS:
        raise _Problem(INVALID_PARAMETERS, "must be one of " + ", ".join(_CALL_RESTRICTS))
    return text


# --- base classes ------------------------------------------------------------------------------------


class _ApiModel(BaseModel):
    """API names as aliases; reprs, ``str()`` and :meth:`masked` never show a full number."""

    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in _NUMBER_FIELDS and isinstance(value, str) and value:
                yield name, mask_number(value)
            elif isinstance(value, str | dict | list | tuple):
                yield name, mask_obj(value)
            else:
                yield name, value

    def masked(self) -> dict[str, Any]:
        """JSON-friendly dict with API names, phone numbers masked: safe for logs and CLI output."""
        out: dict[str, Any] = mask_obj(self.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return out


class _ApiRequest(_ApiModel):
    """A request the worker sends: frozen, unknown parameters refused."""

    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True, frozen=True, extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        """API names, set fields only, JSON-friendly; :func:`parse_request` loads it back."""
        out: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        return out

    def to_api_params(self) -> dict[str, str]:
        """The query parameters to sign and send: API names, set fields only, bools ``true``/``false``."""
        return api_params(self.to_json_dict())


def api_params(json_dict: Mapping[str, Any]) -> dict[str, str]:
    """``to_api_params()`` of the request whose ``to_json_dict()`` is ``json_dict``."""
    return {name: _api_text(value) for name, value in json_dict.items()}


# --- BindAxb -------------------------------------------------------------------------------------------


class BindAxbRequest(_ApiRequest):
    """One BindAxb call: binds A and B to an X number from the pool ``PoolKey`` until ``Expiration``."""

    pool_key: str = Field(alias="PoolKey")
    phone_no_a: str = Field(alias="PhoneNoA")
    phone_no_b: str = Field(alias="PhoneNoB")
    expiration: datetime = Field(alias="Expiration")
    phone_no_x: str | None = Field(default=None, alias="PhoneNoX")
    expect_city: str | None = Field(default=None, alias="ExpectCity")
    is_recording_enabled: bool | None = Field(default=None, alias="IsRecordingEnabled")
    out_id: str | None = Field(default=None, alias="OutId")
    out_order_id: str | None = Field(default=None, alias="OutOrderId")
    call_display_type: int | None = Field(default=None, alias="CallDisplayType")
    call_restrict: CallRestrict | None = Field(default=None, alias="CallRestrict")
    call_timeout: int | None = Field(default=None, alias="CallTimeout")
    asr_status: bool | None = Field(default=None, alias="ASRStatus")
    asr_model_id: str | None = Field(default=None, alias="ASRModelId")
    ring_config: str | None = Field(default=None, alias="RingConfig")
    dtmf_config: str | None = Field(default=None, alias="DtmfConfig")

    @field_validator("pool_key", mode="before")
    @classmethod
    def _v_pool_key(cls, v: Any) -> str:
        return _pool_key(v)

    @field_validator("phone_no_a", "phone_no_b", mode="before")
    @classmethod
    def _v_required_phone(cls, v: Any) -> str | None:
        return _phone(v, required=True)

    @field_validator("phone_no_x", mode="before")
    @classmethod
    def _v_phone_x(cls, v: Any) -> str | None:
        return _phone(v, required=False)

    @field_validator("expiration", mode="before")
    @classmethod
    def _v_expiration(cls, v: Any, info: ValidationInfo) -> datetime:
        if _is_blank(v):
            raise _Problem(EXPIRE_DATE_ILLEGAL, REQUIRED)
        moment = _parse_expiration(v)
        _check_future(moment, info)
        return moment

    @field_validator("expect_city", mode="before")
    @classmethod
    def _v_city(cls, v: Any) -> str | None:
        city = _text(v, max_length=MAX_CITY_LENGTH)
        if city is not None and city.endswith("市"):
            raise _Problem(INVALID_PARAMETERS, "city name without the 市 suffix (北京, not 北京市)")
        return city

    @field_validator("out_id", "out_order_id", "asr_model_id", mode="before")
    @classmethod
    def _v_ids(cls, v: Any) -> str | None:
        return _text(v)

    @field_validator("is_recording_enabled", "asr_status", mode="before")
    @classmethod
    def _v_bools(cls, v: Any) -> bool | None:
        return _bool(v)

    @field_validator("call_display_type", mode="before")
    @classmethod
    def _v_display(cls, v: Any) -> int | None:
        return _call_display_type(v)

    @field_validator("call_restrict", mode="before")
    @classmethod
    def _v_restrict(cls, v: Any) -> str | None:
        return _call_restrict(v)

    @field_validator("call_timeout", mode="before")
    @classmethod
    def _v_timeout(cls, v: Any) -> int | None:
        seconds = _int(v)
        if seconds is None:
            return None
        low, high = CALL_TIMEOUT_API_RANGE_S
        if not low <= seconds <= high:
            raise _Problem(INVALID_PARAMETERS, f"must be {low}-{high} seconds")
        sdk_low, sdk_high = CALL_TIMEOUT_SDK_RANGE_S
        if not sdk_low <= seconds <= sdk_high:
            warnings.warn(
                f"CallTimeout={seconds} s is outside the SDK's documented {sdk_low}-{sdk_high} s"
                f" (the API accepts {low}-{high})",
                CallTimeoutWarning,
                stacklevel=2,
            )
        return seconds

    @field_validator("ring_config", "dtmf_config", mode="before")
    @classmethod
    def _v_json(cls, v: Any) -> str | None:
        return _json_text(v)

    @model_validator(mode="after")
    def _v_a_differs_from_b(self) -> BindAxbRequest:
        if self.phone_no_a == self.phone_no_b:
            raise _Problem(INVALID_PARAMETERS, "must differ from PhoneNoA", field="PhoneNoB")
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


# --- UnbindSubscription / UpdateSubscription / QuerySubscriptionDetail -------------------------------


class UnbindSubscriptionRequest(_ApiRequest):
    """Ends a binding; ``isv.SUBS_NOT_EXIST`` in the answer means it was already gone."""

    pool_key: str = Field(alias="PoolKey")
    secret_no: str = Field(alias="SecretNo")
    subs_id: str = Field(alias="SubsId")

    @field_validator("pool_key", mode="before")
    @classmethod
    def _v_pool_key(cls, v: Any) -> str:
        return _pool_key(v)

    @field_validator("secret_no", mode="before")
    @classmethod
    def _v_secret_no(cls, v: Any) -> str | None:
        return _phone(v, required=True)

    @field_validator("subs_id", mode="before")
    @classmethod
    def _v_subs_id(cls, v: Any) -> str | None:
        return _text(v, required=True)


class QuerySubscriptionDetailRequest(_ApiRequest):
    """Looks a binding up by its X number and subscription id."""

    pool_key: str = Field(alias="PoolKey")
    phone_no_x: str = Field(alias="PhoneNoX")
    subs_id: str = Field(alias="SubsId")

    @field_validator("pool_key", mode="before")
    @classmethod
    def _v_pool_key(cls, v: Any) -> str:
        return _pool_key(v)

    @field_validator("phone_no_x", mode="before")
    @classmethod
    def _v_phone_x(cls, v: Any) -> str | None:
        return _phone(v, required=True)

    @field_validator("subs_id", mode="before")
    @classmethod
    def _v_subs_id(cls, v: Any) -> str | None:
        return _text(v, required=True)


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


class UpdateSubscriptionRequest(_ApiRequest):
    """Changes one aspect of a binding, chosen by ``OperateType`` (``updateExpire`` + ``Expiration``, ...)."""

    pool_key: str = Field(alias="PoolKey")
    subs_id: str = Field(alias="SubsId")
    phone_no_x: str = Field(alias="PhoneNoX")
    operate_type: OperateType = Field(alias="OperateType")
    expiration: datetime | None = Field(default=None, alias="Expiration")
    phone_no_a: str | None = Field(default=None, alias="PhoneNoA")
    phone_no_b: str | None = Field(default=None, alias="PhoneNoB")
    out_id: str | None = Field(default=None, alias="OutId")
    group_id: str | None = Field(default=None, alias="GroupId")
    call_restrict: CallRestrict | None = Field(default=None, alias="CallRestrict")
    call_display_type: int | None = Field(default=None, alias="CallDisplayType")
    is_recording_enabled: bool | None = Field(default=None, alias="IsRecordingEnabled")
    asr_status: bool | None = Field(default=None, alias="ASRStatus")
    asr_model_id: str | None = Field(default=None, alias="ASRModelId")
    ring_config: str | None = Field(default=None, alias="RingConfig")

    @field_validator("pool_key", mode="before")
    @classmethod
    def _v_pool_key(cls, v: Any) -> str:
        return _pool_key(v)

    @field_validator("subs_id", mode="before")
    @classmethod
    def _v_subs_id(cls, v: Any) -> str | None:
        return _text(v, required=True)

    @field_validator("phone_no_x", mode="before")
    @classmethod
    def _v_phone_x(cls, v: Any) -> str | None:
        return _phone(v, required=True)

    @field_validator("operate_type", mode="before")
    @classmethod
    def _v_operate_type(cls, v: Any) -> str:
        if _is_blank(v):
            raise _Problem(INVALID_PARAMETERS, REQUIRED)
        text = v.strip() if isinstance(v, str) else ""
        if text not in _OPERATE_TYPES:
            raise _Problem(INVALID_PARAMETERS, "must be one of " + ", ".join(_OPERATE_TYPES))
        return text

    @field_validator("expiration", mode="before")
    @classmethod
    def _v_expiration(cls, v: Any, info: ValidationInfo) -> datetime | None:
        if _is_blank(v):
            return None
        moment = _parse_expiration(v)
        _check_future(moment, info)
        return moment

    @field_validator("phone_no_a", "phone_no_b", mode="before")
    @classmethod
    def _v_phones(cls, v: Any) -> str | None:
        return _phone(v, required=False)

    @field_validator("out_id", "group_id", "asr_model_id", mode="before")
    @classmethod
    def _v_ids(cls, v: Any) -> str | None:
        return _text(v)

    @field_validator("call_restrict", mode="before")
    @classmethod
    def _v_restrict(cls, v: Any) -> str | None:
        return _call_restrict(v)

    @field_validator("call_display_type", mode="before")
    @classmethod
    def _v_display(cls, v: Any) -> int | None:
        return _call_display_type(v)

    @field_validator("is_recording_enabled", "asr_status", mode="before")
    @classmethod
    def _v_bools(cls, v: Any) -> bool | None:
        return _bool(v)

    @field_validator("ring_config", mode="before")
    @classmethod
    def _v_json(cls, v: Any) -> str | None:
        return _json_text(v)

    @model_validator(mode="after")
    def _v_operation_has_its_parameter(self) -> UpdateSubscriptionRequest:
        needed = _UPDATE_NEEDS.get(self.operate_type)
        if needed is not None and getattr(self, needed) is None:
            alias = type(self).model_fields[needed].alias or needed
            raise _Problem(INVALID_PARAMETERS, f"{REQUIRED} for OperateType={self.operate_type}", field=alias)
        return self

    @field_serializer("expiration", when_used="json")
    def _s_expiration(self, value: datetime | None) -> str | None:
        return None if value is None else format_expiration(value)


# --- parsing: ValidationError -> InvalidRequestError ----------------------------------------------

_Request = TypeVar("_Request", bound=_ApiRequest)

# A missing required field gets the code of its own format check.
_MISSING_CODE = {
    "PhoneNoA": MOBILE_NUMBER_ILLEGAL,
    "PhoneNoB": MOBILE_NUMBER_ILLEGAL,
    "PhoneNoX": MOBILE_NUMBER_ILLEGAL,
    "SecretNo": MOBILE_NUMBER_ILLEGAL,
    "Expiration": EXPIRE_DATE_ILLEGAL,
}


def _problems(exc: ValidationError, model: type[BaseModel]) -> list[FieldProblem]:
    """One :class:`FieldProblem` per pydantic error, by API name; never quotes an input value."""
    aliases = {name: f.alias or name for name, f in model.model_fields.items()}
    action = model.__name__.removesuffix("Request")
    out: list[FieldProblem] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=True):
        loc = err.get("loc", ())
        field = mask_text(aliases.get(str(loc[0]), str(loc[0]))) if loc else ""
        etype = err.get("type", "")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _Problem):
            out.append(FieldProblem(cause.field or field or "request", cause.code, cause.reason))
        elif etype == "missing":
            out.append(FieldProblem(field, _MISSING_CODE.get(field, INVALID_PARAMETERS), REQUIRED))
        elif etype == "extra_forbidden":
            out.append(FieldProblem(field, INVALID_PARAMETERS, f"is not a {action} parameter"))
        elif etype == "invalid_key":
            out.append(FieldProblem(field or "request", INVALID_PARAMETERS, "parameter names must be text"))
        else:
            code = _MISSING_CODE.get(field, INVALID_PARAMETERS)
            out.append(FieldProblem(field or "request", code, f"is invalid ({etype})"))
    return out


def parse_request(
    model: type[_Request],
    data: Mapping[str, Any] | _Request,
    *,
    check_future: bool = True,
    now: datetime | None = None,
) -> _Request:
    """Validate ``data`` (API or field names) into ``model``, or raise :class:`InvalidRequestError`.

    ``check_future=False`` skips the "Expiration more than a minute ahead" rule (for requests
    reloaded from storage); ``now`` replaces the clock for that rule. An instance of ``model`` is
    returned as is when the rule is skipped, and re-checked against ``now`` otherwise.
    """
    if isinstance(data, model):
        if not check_future:
            return data
        data = data.to_json_dict()
    if not isinstance(data, Mapping):
        raise InvalidRequestError.single(
            "request", INVALID_PARAMETERS, f"must be a mapping of {model.__name__} parameters"
        )
    problems: list[FieldProblem] = []
    try:
        return model.model_validate(dict(data), context={"check_future": check_future, "now": now})
    except ValidationError as exc:
        problems = _problems(exc, model)
    # Raised outside the except block: the pydantic error (which holds the inputs) is not chained.
    raise InvalidRequestError(problems) from None


def parse_expiration(value: Any, *, check_future: bool = True, now: datetime | None = None) -> datetime:
    """An ``Expiration`` (``yyyy-MM-dd HH:mm:ss`` UTC+8, ISO 8601, or a datetime) as an aware UTC+8
    datetime, more than a minute from now unless ``check_future=False``; else
    :class:`InvalidRequestError` naming ``Expiration`` and ``isv.EXPIRE_DATE_ILLEGAL``."""
    problem: _Problem | None = None
    try:
        if _is_blank(value):
            raise _Problem(EXPIRE_DATE_ILLEGAL, REQUIRED)
        moment = _parse_expiration(value)
        if check_future:
            ref = now or datetime.now(UTC)
            if ref.utcoffset() is None:
                ref = ref.replace(tzinfo=CST)
            if moment - ref <= MIN_EXPIRATION_LEAD:
                raise _Problem(EXPIRE_DATE_ILLEGAL, "must be more than 1 minute from now (UTC+8)")
            if moment - ref > MAX_EXPIRATION_AHEAD:
                raise _Problem(EXPIRE_DATE_ILLEGAL, TOO_FAR_AHEAD)
        return moment
    except _Problem as exc:
        problem = exc
    raise InvalidRequestError.single("Expiration", problem.code, problem.reason) from None


def parse_bind_request(
    data: Mapping[str, Any] | BindAxbRequest, *, check_future: bool = True, now: datetime | None = None
) -> BindAxbRequest:
    """Validate a BindAxb request or raise :class:`InvalidRequestError` naming each bad field and
    the vendor code the call would have earned; see :func:`parse_request`."""
    return parse_request(BindAxbRequest, data, check_future=check_future, now=now)


# --- BindAxb without pydantic: the bulk producers' fast path -----------------------------------------
#
# ``axb backfill`` validates a hundred thousand rows at a time; pydantic's machinery around the
# validators (and ``model_dump``) cost more than the checks themselves. :func:`bind_params`
# applies the very helpers BindAxbRequest's field validators call, to the same fields, and
# returns what ``to_json_dict()`` would; whenever it is not sure the row is valid it returns
# None and the caller asks :func:`parse_bind_request`, which then accepts it or raises the one
# error everybody sees. So the fast path only ever *accepts*: every refusal, with its fields,
# codes and reasons, still comes from pydantic.


class _NotFast(Exception):
    """A value the fast path leaves to pydantic (it may warn, or be refused)."""


def _fast_phone_required(v: Any) -> str | None:
    return _phone(v, required=True)


def _fast_phone_optional(v: Any) -> str | None:
    return _phone(v, required=False)


def _fast_city(v: Any) -> str | None:
    city = _text(v, max_length=MAX_CITY_LENGTH)
    if city is not None and city.endswith("市"):
        raise _NotFast
    return city


def _fast_call_timeout(v: Any) -> int | None:
    seconds = _int(v)
    if seconds is None:
        return None
    # Outside the SDK's range pydantic warns (CallTimeoutWarning) or refuses: its business.
    if not CALL_TIMEOUT_SDK_RANGE_S[0] <= seconds <= CALL_TIMEOUT_SDK_RANGE_S[1]:
        raise _NotFast
    return seconds


# BindAxbRequest's fields in declaration order (the order of ``to_json_dict``), each with the
# helper its field validator applies; Expiration (None) is handled inline: parse cache, future check.
_FAST_FIELDS: tuple[tuple[str, str, Callable[[Any], Any] | None], ...] = (
    ("pool_key", "PoolKey", _pool_key),
    ("phone_no_a", "PhoneNoA", _fast_phone_required),
    ("phone_no_b", "PhoneNoB", _fast_phone_required),
    ("expiration", "Expiration", None),
    ("phone_no_x", "PhoneNoX", _fast_phone_optional),
    ("expect_city", "ExpectCity", _fast_city),
    ("is_recording_enabled", "IsRecordingEnabled", _bool),
    ("out_id", "OutId", _text),
    ("out_order_id", "OutOrderId", _text),
    ("call_display_type", "CallDisplayType", _call_display_type),
    ("call_restrict", "CallRestrict", _call_restrict),
    ("call_timeout", "CallTimeout", _fast_call_timeout),
    ("asr_status", "ASRStatus", _bool),
    ("asr_model_id", "ASRModelId", _text),
    ("ring_config", "RingConfig", _json_text),
    ("dtmf_config", "DtmfConfig", _json_text),
)
# Printable ASCII without spaces, at most MAX_ID_LENGTH characters: what _text keeps as it is.
_PLAIN_ID = re.compile(f"[!-~]{{1,{MAX_ID_LENGTH}}}")
# A text value that matches its field's pattern here is what the field's check returns unchanged
# (no whitespace to strip, nothing to normalise); anything else goes through the check.
_FAST_PLAIN: dict[str, re.Pattern[str]] = {
    "PoolKey": _POOL_KEY,
    "PhoneNoA": _NUMBER,
    "PhoneNoB": _NUMBER,
    "PhoneNoX": _NUMBER,
    "OutId": _PLAIN_ID,
    "OutOrderId": _PLAIN_ID,
    "ASRModelId": _PLAIN_ID,
}
# Input key (API name or field name) -> (API name, position, check, plain pattern).
_FastSpec = tuple[str, int, Callable[[Any], Any] | None, re.Pattern[str] | None]
_FAST_KEYS: dict[str, _FastSpec] = {
    **{
        alias: (alias, i, check, _FAST_PLAIN.get(alias))
        for i, (_name, alias, check) in enumerate(_FAST_FIELDS)
    },
    **{
        name: (alias, i, check, _FAST_PLAIN.get(alias)) for i, (name, alias, check) in enumerate(_FAST_FIELDS)
    },
}
_NAME_JSON = {alias: _json_str(alias) for _name, alias, _check in _FAST_FIELDS}
_FAST_POSITION = {alias: i for i, (_name, alias, _check) in enumerate(_FAST_FIELDS)}
_FAST_EXPIRATION = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
# Expiration value -> (the aware UTC+8 datetime, its text as sent, epoch ms). The rows of a file
# mostly share a few expirations; the cache is dropped whole when it grows large.
_expiration_cache: dict[str, tuple[datetime, str, int]] = {}
_EXPIRATION_CACHE_MAX = 4096

if {name for name, _alias, _check in _FAST_FIELDS} != set(BindAxbRequest.model_fields) or any(
    BindAxbRequest.model_fields[name].alias != alias for name, alias, _check in _FAST_FIELDS
):  # pragma: no cover - a new BindAxbRequest field must be added to _FAST_FIELDS too
    raise RuntimeError("worker.models._FAST_FIELDS is out of step with BindAxbRequest")


def _fast_moment(value: Any) -> tuple[datetime, str, int]:
    """What the Expiration validator makes of ``value``, before its future check."""
    if isinstance(value, str):
        hit = _expiration_cache.get(value)
        if hit is not None:
            return hit
        if _is_blank(value):
            raise _NotFast
        m = _FAST_EXPIRATION.fullmatch(value.strip())
        if m is not None:
            # Zero-padded fields in range read as strptime(EXPIRATION_FORMAT) reads them; out of
            # range, datetime() raises and pydantic decides.
            y, mo, d, h, mi, sec = map(int, m.groups())
            moment = datetime(y, mo, d, h, mi, sec, tzinfo=CST)
        else:
            moment = _parse_expiration(value)
        facts = (moment, format_expiration(moment), int(moment.timestamp() * 1000))
        if len(_expiration_cache) >= _EXPIRATION_CACHE_MAX:
            _expiration_cache.clear()
        _expiration_cache[value] = facts
        return facts
    if _is_blank(value):
        raise _NotFast
    moment = _parse_expiration(value)
    return moment, format_expiration(moment), int(moment.timestamp() * 1000)


def bind_params(
    data: Any, *, check_future: bool = True, now: datetime | None = None
) -> tuple[dict[str, Any], int] | None:
    """``(to_json_dict(), Expiration in epoch ms)`` of the request that
    ``parse_bind_request(data, check_future=..., now=...)`` returns for the mapping ``data``, or
    None when that call may refuse it (or warn): then make it.

    Never raises, and never accepts what :func:`parse_bind_request` refuses.
    """
    if type(data) is not dict and not isinstance(data, Mapping):
        return None
    try:
        items = data.items() if type(data) is dict else dict(data).items()
        found: dict[str, Any] = {}
        expires: tuple[datetime, str, int] | None = None
        unset: list[str] = []  # optional fields given blank
        last, in_order = -1, True
        for key, value in items:
            spec = _FAST_KEYS.get(key) if type(key) is str else None
            if spec is None:
                return None  # an unknown parameter, or a name that is not text
            alias, position, check, plain = spec
            if alias in found:
                return None  # the API name and the field name both
            if position < last:
                in_order = False
            last = position
            if plain is not None and type(value) is str and plain.fullmatch(value):
                found[alias] = value
            elif check is None:
                expires = _fast_moment(value)
                found[alias] = expires[1]
            else:
                checked = check(value)
                if checked is not None:
                    found[alias] = checked
                else:
                    unset.append(alias)
        if unset and (len(set(unset)) != len(unset) or not found.keys().isdisjoint(unset)):
            return None  # the API name and the field name both
        if expires is None or "PoolKey" not in found or "PhoneNoA" not in found or "PhoneNoB" not in found:
            return None  # a required field is missing
        if found["PhoneNoA"] == found["PhoneNoB"]:
            return None
        if check_future:
            ref = now if isinstance(now, datetime) else datetime.now(UTC)
            if ref.utcoffset() is None:
                ref = ref.replace(tzinfo=CST)
            if not MIN_EXPIRATION_LEAD < expires[0] - ref <= MAX_EXPIRATION_AHEAD:
                return None
    except Exception:
        return None  # whatever it is, pydantic decides (and raises what it raises)
    if not in_order:
        found = {alias: found[alias] for alias in sorted(found, key=_FAST_POSITION.__getitem__)}
    return found, expires[2]


def _json_scalar(value: Any) -> str:
    """``json.dumps(value, ensure_ascii=False)`` of a str, bool or int."""
    if type(value) is str:
        return _json_str(value)
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return int.__repr__(value)
    return _COMPACT_JSON.encode(value)


def bind_request_json(json_dict: Mapping[str, Any]) -> str:
    """The stored form of a request, ``json.dumps(to_json_dict(), ensure_ascii=False,
    separators=(",", ":"))``, written out by hand (the values are text, booleans and ints)."""
    return bind_stored_forms(json_dict)[0]


def bind_fingerprint(json_dict: Mapping[str, Any]) -> str:
    """:meth:`BindAxbRequest.fingerprint` of the request whose ``to_json_dict()`` is ``json_dict``:
    SHA-256 of ``json.dumps(api_params(json_dict), sort_keys=True, ensure_ascii=False)``, written
    out by hand (every API parameter is text)."""
    return bind_stored_forms(json_dict)[1]


def bind_stored_forms(json_dict: Mapping[str, Any]) -> tuple[str, str]:
    """:func:`bind_request_json` and :func:`bind_fingerprint` of ``json_dict`` together (each
    name and text value JSON-encoded once)."""
    pairs: list[tuple[str, str, str, str]] = []  # name, "name", value as stored, value as sent
    for name, value in json_dict.items():
        quoted = _NAME_JSON.get(name) or _json_str(name)
        if type(value) is str:
            stored = sent = _json_str(value)
        else:
            stored, sent = _json_scalar(value), _json_str(_api_text(value))
        pairs.append((name, quoted, stored, sent))
    request = "{" + ",".join([quoted + ":" + stored for _n, quoted, stored, _s in pairs]) + "}"
    pairs.sort()  # by name (names are unique)
    canonical = "{" + ", ".join([quoted + ": " + sent for _n, quoted, _v, sent in pairs]) + "}"
    return request, hashlib.sha256(canonical.encode()).hexdigest()


def _api_text(value: Any) -> str:
    """A parameter as sent (:func:`api_params`): booleans ``true``/``false``, the rest ``str()``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def bind_default_key(json_dict: Mapping[str, Any]) -> str:
    """:meth:`BindAxbRequest.default_idempotency_key` of the request whose ``to_json_dict()`` is
    ``json_dict``: ``OutId`` if set, else ``h:`` + 32 hex digits of SHA-256(PoolKey|A|B|Expiration)."""
    out_id = json_dict.get("OutId")
    if out_id:
        return str(out_id)
    raw = "|".join(
        [json_dict["PoolKey"], json_dict["PhoneNoA"], json_dict["PhoneNoB"], json_dict["Expiration"]]
    )
    return "h:" + hashlib.sha256(raw.encode()).hexdigest()[:32]


_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


# --- responses ---------------------------------------------------------------------------------------


def _id_text(value: Any) -> Any:
    """Vendor ids arrive as strings, but tolerate JSON numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class _ApiResponse(_ApiModel):
    """A vendor answer: unknown keys are kept (``extra="allow"``), never refused."""

    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True, extra="allow")


class SecretBindDTO(_ApiResponse):
    """What a successful BindAxb returns: the X number, the subscription id, an extension or ``""``."""

    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True, extra="allow", frozen=True)

    secret_no: str = Field(alias="SecretNo")
    subs_id: str = Field(alias="SubsId")
    extension: str = Field(default="", alias="Extension")

    @field_validator("secret_no", "subs_id", mode="before")
    @classmethod
    def _v_ids(cls, v: Any) -> Any:
        return _id_text(v)

    @field_validator("extension", mode="before")
    @classmethod
    def _v_extension(cls, v: Any) -> Any:
        return "" if v is None else _id_text(v)


class VendorResponse(_ApiResponse):
    """The common answer shape (UnbindSubscription, UpdateSubscription, errors)."""

    request_id: str = Field(default="", alias="RequestId")
    code: str = Field(default="", alias="Code")
    message: str | None = Field(default="", alias="Message")

    @property
    def ok(self) -> bool:
        return self.code == "OK"


class BindAxbResponse(VendorResponse):
    secret_bind_dto: SecretBindDTO | None = Field(default=None, alias="SecretBindDTO")


class SecretBindDetailDTO(_ApiResponse):
    """A binding as QuerySubscriptionDetail describes it (``Status`` 1 active, 0 expired)."""

    status: int | None = Field(default=None, alias="Status")
    expire_date: str | None = Field(default=None, alias="ExpireDate")
    phone_no_a: str | None = Field(default=None, alias="PhoneNoA")
    phone_no_b: str | None = Field(default=None, alias="PhoneNoB")
    phone_no_x: str | None = Field(default=None, alias="PhoneNoX")
    gmt_create: str | None = Field(default=None, alias="GmtCreate")
    need_record: bool | None = Field(default=None, alias="NeedRecord")
    subs_id: str | None = Field(default=None, alias="SubsId")
    extension: str | None = Field(default=None, alias="Extension")
    call_restrict: str | None = Field(default=None, alias="CallRestrict")
    asr_status: bool | None = Field(default=None, alias="ASRStatus")
    asr_model_id: str | None = Field(default=None, alias="ASRModelId")
    group_id: str | None = Field(default=None, alias="GroupId")

    @field_validator(
        "phone_no_a", "phone_no_b", "phone_no_x", "subs_id", "extension", "group_id", mode="before"
    )
    @classmethod
    def _v_ids(cls, v: Any) -> Any:
        return _id_text(v)

    @property
    def active(self) -> bool:
        return self.status == 1


class QuerySubscriptionDetailResponse(VendorResponse):
    secret_bind_detail_dto: SecretBindDetailDTO | None = Field(default=None, alias="SecretBindDetailDTO")
