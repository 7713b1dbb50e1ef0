"""Field rules for Dypls request parameters: one check per kind of value, each naming its vendor code.

Every check takes what a client sent (CSV text, JSON values, Python objects) and returns the
value as the API wants it, ``None`` for "not set", or raises :class:`FieldError` carrying the
vendor code the call would have earned and a reason that never quotes the input.

Codes: a bad number is ``isv.MOBILE_NUMBER_ILLEGAL``, a bad or too-close Expiration
``isv.EXPIRE_DATE_ILLEGAL``, everything else ``isv.INVALID_PARAMETERS``. A required field that
is missing, ``None`` or blank gets the code of its own format check (``is required``).

Numbers: every kind of whitespace is removed, then a ``+86``/``0086``/``86`` prefix is dropped
when what remains is a number (``+86 0571 8899 2688``; ``+86 571 8899 2688``, the E.164 form
without the trunk ``0``, becomes ``057188992688`` too). Hyphens are never stripped: the vendor
calls ``0571-88992688`` illegal, and so do we. Only ASCII digits count.

The request models (:mod:`worker.vendor.requests`) and the bulk fast path
(:mod:`worker.vendor.fastpath`) both apply these checks, so each rule is written once.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, get_args

CST = timezone(timedelta(hours=8), "CST")
"""China Standard Time (UTC+8): the zone of every ``Expiration`` the vendor reads or writes."""
EXPIRATION_FORMAT = "%Y-%m-%d %H:%M:%S"
MIN_EXPIRATION_LEAD = timedelta(minutes=1)
"""An Expiration must lie *more* than this after now."""
MAX_EXPIRATION_AHEAD = timedelta(days=366)
"""An Expiration may lie at most this far ahead: records and histories holding phone numbers live
until the Expiration (plus ``AXB_RESULT_TTL_EXTRA_S``), so this bounds how long they are kept."""
TOO_FAR_AHEAD = "must be at most 366 days from now (UTC+8)"
TOO_CLOSE = "must be more than 1 minute from now (UTC+8)"

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
CALL_RESTRICTS: tuple[str, ...] = get_args(CallRestrict)
OPERATE_TYPES: tuple[str, ...] = get_args(OperateType)

MOBILE = re.compile(r"1[3-9][0-9]{9}")
LANDLINE = re.compile(r"0[0-9]{9,11}")
NUMBER = re.compile(r"1[3-9][0-9]{9}|0[0-9]{9,11}")  # MOBILE or LANDLINE
# After +86 a landline drops its trunk 0: Beijing 10, then 2x and 3xx-9xx area codes.
_NATIONAL_LANDLINE = re.compile(r"(?:10|[2-9][0-9])[0-9]{7,9}")
_COUNTRY_PREFIXES = ("+86", "0086", "86")
POOL_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
PLAIN_ID = re.compile(f"[!-~]{{1,{MAX_ID_LENGTH}}}")
"""Printable ASCII without spaces, at most MAX_ID_LENGTH characters: kept as is by :func:`check_text`."""
_INTEGER = re.compile(r"[+-]?[0-9]{1,9}")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

NOT_A_NUMBER = "not a mobile or landline number"
REQUIRED = "is required"


class CallTimeoutWarning(UserWarning):
    """CallTimeout is inside the API's 0-180 s but outside the SDK's documented 5-20 s."""


class FieldError(ValueError):
    """Raised by a field check: carries the vendor code and a reason that never quotes input.

    ``field`` is only needed from model-level validators (pydantic gives field validators a loc).
    """

    def __init__(self, code: str, reason: str, *, field: str | None = None) -> None:
        self.code = code
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


def is_blank(value: Any) -> bool:
    """``None`` or whitespace only: an optional parameter that is not set."""
    return value is None or (isinstance(value, str) and value.strip() == "")


# --- phone numbers -----------------------------------------------------------------------------------


def normalize_phone(value: str) -> str | None:
    """The digits of a mobile (``1[3-9]`` + 9) or landline (``0`` + 9-11) number, or None if illegal.

    Whitespace anywhere goes, then a ``+86``/``0086``/``86`` prefix when what remains is a number
    (restoring a landline's trunk ``0``). Hyphens, letters and non-ASCII digits make it illegal.
    """
    if not isinstance(value, str):
        return None
    if NUMBER.fullmatch(value):  # already bare digits (the common case): nothing to remove
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
    return bool(MOBILE.fullmatch(text) or LANDLINE.fullmatch(text))


def check_phone(value: Any, *, required: bool) -> str | None:
    """A phone number's digits (:func:`normalize_phone`); ints accepted; blank means not set."""
    if is_blank(value):
        if required:
            raise FieldError(MOBILE_NUMBER_ILLEGAL, REQUIRED)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    number = normalize_phone(value) if isinstance(value, str) else None
    if number is None:
        raise FieldError(MOBILE_NUMBER_ILLEGAL, NOT_A_NUMBER)
    return number


def check_required_phone(value: Any) -> str | None:
    """:func:`check_phone` of a required number."""
    return check_phone(value, required=True)


def check_optional_phone(value: Any) -> str | None:
    """:func:`check_phone` of an optional number."""
    return check_phone(value, required=False)


# --- Expiration --------------------------------------------------------------------------------------


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


def read_expiration(value: Any) -> datetime:
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
                raise FieldError(EXPIRE_DATE_ILLEGAL, "must be 'yyyy-MM-dd HH:mm:ss' (UTC+8)") from None
    else:
        raise FieldError(EXPIRE_DATE_ILLEGAL, "must be a 'yyyy-MM-dd HH:mm:ss' string (UTC+8) or a datetime")
    try:
        return to_cst(moment)
    except (OverflowError, ValueError):
        raise FieldError(EXPIRE_DATE_ILLEGAL, "is out of range") from None


def reference_now(now: Any) -> datetime:
    """The clock the future rule reads: ``now`` if it is a datetime (naive means UTC+8), else the time."""
    ref = now if isinstance(now, datetime) else datetime.now(UTC)
    if ref.utcoffset() is None:
        ref = ref.replace(tzinfo=CST)
    return ref


def check_lead(moment: datetime, now: Any = None) -> None:
    """Demand ``moment`` lie more than a minute and at most 366 days after :func:`reference_now`."""
    ahead = moment - reference_now(now)
    if ahead <= MIN_EXPIRATION_LEAD:
        raise FieldError(EXPIRE_DATE_ILLEGAL, TOO_CLOSE)
    if ahead > MAX_EXPIRATION_AHEAD:
        raise FieldError(EXPIRE_DATE_ILLEGAL, TOO_FAR_AHEAD)


def check_expiration(value: Any, *, check_future: bool, now: Any = None) -> datetime:
    """A required Expiration as an aware UTC+8 datetime (:func:`read_expiration`), its lead
    checked (:func:`check_lead`) unless ``check_future`` is false."""
    if is_blank(value):
        raise FieldError(EXPIRE_DATE_ILLEGAL, REQUIRED)
    moment = read_expiration(value)
    if check_future:
        check_lead(moment, now)
    return moment


# --- text, numbers, flags ----------------------------------------------------------------------------


def check_text(value: Any, *, required: bool = False, max_length: int = MAX_ID_LENGTH) -> str | None:
    """A single-line string (ints accepted as their digits); blank means not set."""
    if is_blank(value):
        if required:
            raise FieldError(INVALID_PARAMETERS, REQUIRED)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise FieldError(INVALID_PARAMETERS, "must be text")
    text = value.strip()
    if len(text) > max_length:
        raise FieldError(INVALID_PARAMETERS, f"longer than {max_length} characters")
    # Cc and Cs are not printable: a printable text (the common case) needs no closer look.
    if not text.isprintable() and any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise FieldError(INVALID_PARAMETERS, "contains control characters")
    return text


def check_optional_text(value: Any) -> str | None:
    """:func:`check_text` of an optional id (OutId, OutOrderId, ASRModelId, GroupId)."""
    return check_text(value)


def check_required_text(value: Any) -> str | None:
    """:func:`check_text` of a required id (SubsId)."""
    return check_text(value, required=True)


def check_city(value: Any) -> str | None:
    """ExpectCity: a short city name, without the 市 suffix; blank means not set."""
    city = check_text(value, max_length=MAX_CITY_LENGTH)
    if city is not None and city.endswith("市"):
        raise FieldError(INVALID_PARAMETERS, "city name without the 市 suffix (北京, not 北京市)")
    return city


def check_pool_key(value: Any) -> str:
    """PoolKey: 1-64 letters, digits, ``_`` or ``-`` (required)."""
    if is_blank(value):
        raise FieldError(INVALID_PARAMETERS, REQUIRED)
    if not isinstance(value, str) or not POOL_KEY.fullmatch(value.strip()):
        raise FieldError(INVALID_PARAMETERS, "must be 1-64 letters, digits, '_' or '-'")
    return value.strip()


def check_json_text(value: Any) -> str | None:
    """RingConfig/DtmfConfig: JSON text of at most MAX_CONFIG_LENGTH characters; blank means not set."""
    if is_blank(value):
        return None
    if not isinstance(value, str):
        raise FieldError(INVALID_PARAMETERS, "must be JSON text")
    if len(value) > MAX_CONFIG_LENGTH:
        raise FieldError(INVALID_PARAMETERS, f"longer than {MAX_CONFIG_LENGTH} characters")
    if not value.isprintable() and any(unicodedata.category(c) == "Cs" for c in value):
        raise FieldError(INVALID_PARAMETERS, "must be JSON text")
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        raise FieldError(INVALID_PARAMETERS, "must be JSON text") from None
    return value


def check_bool(value: Any) -> bool | None:
    """``True``/``False``, or CSV text ``true``/``false``/``1``/``0``/``yes``/``no`` (any case)."""
    if is_blank(value) or isinstance(value, bool):
        return value if isinstance(value, bool) else None
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FieldError(INVALID_PARAMETERS, "must be true or false")


def check_int(value: Any) -> int | None:
    """An int, a whole float, or CSV text like ``"15"``; blank means not set."""
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise FieldError(INVALID_PARAMETERS, "must be a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise FieldError(INVALID_PARAMETERS, "must be a whole number")


def check_call_display_type(value: Any) -> int | None:
    """CallDisplayType: 1, the only value the API allows; blank means not set."""
    number = check_int(value)
    if number is not None and number != 1:
        raise FieldError(INVALID_PARAMETERS, "must be 1 (the only value the API allows)")
    return number


def check_call_restrict(value: Any) -> str | None:
    """CallRestrict: one of :data:`CALL_RESTRICTS`; blank means not set."""
    if is_blank(value):
        return None
    text = value.strip() if isinstance(value, str) else None
    if text not in CALL_RESTRICTS:
        raise FieldError(INVALID_PARAMETERS, "must be one of " + ", ".join(CALL_RESTRICTS))
    return text


def check_operate_type(value: Any) -> str:
    """OperateType: one of :data:`OPERATE_TYPES` (required)."""
    if is_blank(value):
        raise FieldError(INVALID_PARAMETERS, REQUIRED)
    text = value.strip() if isinstance(value, str) else ""
    if text not in OPERATE_TYPES:
        raise FieldError(INVALID_PARAMETERS, "must be one of " + ", ".join(OPERATE_TYPES))
    return text


def check_call_timeout(value: Any) -> int | None:
    """CallTimeout in seconds, inside the API's 0-180 s; blank means not set.

    A value outside the SDK's 5-20 s is accepted; :func:`call_timeout_warning` says why it is odd.
    """
    seconds = check_int(value)
    if seconds is None:
        return None
    low, high = CALL_TIMEOUT_API_RANGE_S
    if not low <= seconds <= high:
        raise FieldError(INVALID_PARAMETERS, f"must be {low}-{high} seconds")
    return seconds


def call_timeout_warning(seconds: int | None) -> str | None:
    """The text of the :class:`CallTimeoutWarning` a checked CallTimeout earns, or None."""
    sdk_low, sdk_high = CALL_TIMEOUT_SDK_RANGE_S
    if seconds is None or sdk_low <= seconds <= sdk_high:
        return None
    low, high = CALL_TIMEOUT_API_RANGE_S
    return (
        f"CallTimeout={seconds} s is outside the SDK's documented {sdk_low}-{sdk_high} s"
        f" (the API accepts {low}-{high})"
    )
