"""Parameter checks as the Dypls API makes them, answered with its business codes.

Deliberately independent of the worker's own models: the simulator is the vendor, and must
catch a worker that validates too little (``+86`` prefixes, a past Expiration, A == B).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo

CST = timezone(timedelta(hours=8), "CST")
EXPIRATION_FORMAT = "%Y-%m-%d %H:%M:%S"
_EXPIRATION_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
# The fields of a usual Expiration, for parse_datetime.
EXPIRATION_FIELDS = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{9,11}$")
CALL_RESTRICTS = frozenset({"CONTROL_AX_DISABLE", "CONTROL_BX_DISABLE", "CONTROL_CLEAR_DISABLE"})
BOOLS = {"true": True, "false": False, "True": True, "False": False}

INVALID_PARAMETERS = "isv.INVALID_PARAMETERS"
MOBILE_NUMBER_ILLEGAL = "isv.MOBILE_NUMBER_ILLEGAL"
EXPIRE_DATE_ILLEGAL = "isv.EXPIRE_DATE_ILLEGAL"


class BusinessError(Exception):
    """A business refusal: HTTP 200 with ``Code`` other than ``OK``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def require(params: Mapping[str, str], *names: str) -> None:
    for name in names:
        if not params.get(name, "").strip():
            raise BusinessError(INVALID_PARAMETERS, f"{name} is mandatory for this action")


def is_phone_number(value: str) -> bool:
    """Mobile ``1[3-9]`` + 9 digits, or landline ``0`` + 9-11 digits; nothing else (no ``+86``)."""
    return bool(_MOBILE.match(value) or _LANDLINE.match(value))


def check_phone(params: Mapping[str, str], name: str) -> str:
    value = params[name]
    if not is_phone_number(value):
        raise BusinessError(MOBILE_NUMBER_ILLEGAL, f"{name} is not a valid phone number")
    return value


def parse_datetime(value: str, fmt: str, fields: re.Pattern[str], tz: tzinfo) -> datetime:
    """``datetime.strptime(value, fmt)`` in ``tz``, raising ``ValueError`` as it does.

    A value that ``fields`` (a pattern of fixed-width ASCII digit groups: year, month, day, hour,
    minute, second) matches whole is built directly: strptime costs some 20 µs per call (locale
    look-ups), once or twice per simulated call. ``datetime`` refuses the same out-of-range
    fields as strptime does; anything of another shape goes through strptime itself.
    """
    m = fields.fullmatch(value)
    if m is None:
        return datetime.strptime(value, fmt).replace(tzinfo=tz)
    year, month, day, hour, minute, second = map(int, m.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=tz)


def check_expiration(value: str, now: datetime, min_ahead_s: float) -> datetime:
    """Parse ``yyyy-MM-dd HH:mm:ss`` (UTC+8) and demand it lie more than ``min_ahead_s`` ahead."""
    if not _EXPIRATION_SHAPE.match(value):
        raise BusinessError(EXPIRE_DATE_ILLEGAL, "Expiration must be formatted yyyy-MM-dd HH:mm:ss")
    try:
        expires = parse_datetime(value, EXPIRATION_FORMAT, EXPIRATION_FIELDS, CST)
    except ValueError:
        raise BusinessError(EXPIRE_DATE_ILLEGAL, "Expiration is not a valid date") from None
    if expires <= now + timedelta(seconds=min_ahead_s):
        raise BusinessError(EXPIRE_DATE_ILLEGAL, "expireDate less than 1 minutes from now")
    return expires


def format_cst(moment: datetime) -> str:
    return moment.astimezone(CST).strftime(EXPIRATION_FORMAT)


def optional_bool(params: Mapping[str, str], name: str) -> bool | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in BOOLS:
        raise BusinessError(INVALID_PARAMETERS, f"{name} must be true or false")
    return BOOLS[raw]


def optional_int(params: Mapping[str, str], name: str, lowest: int, highest: int) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BusinessError(INVALID_PARAMETERS, f"{name} must be an integer") from None
    if not lowest <= value <= highest:
        raise BusinessError(INVALID_PARAMETERS, f"{name} must be within {lowest}..{highest}")
    return value


def optional_call_restrict(params: Mapping[str, str]) -> str | None:
    raw = params.get("CallRestrict")
    if raw is None or raw == "":
        return None
    if raw not in CALL_RESTRICTS:
        raise BusinessError(INVALID_PARAMETERS, f"CallRestrict must be one of {sorted(CALL_RESTRICTS)}")
    return raw


def optional_json(params: Mapping[str, str], name: str) -> None:
    raw = params.get(name)
    if raw:
        try:
            json.loads(raw)
        except ValueError:
            raise BusinessError(INVALID_PARAMETERS, f"{name} must be JSON text") from None


def check_bind_axb(params: Mapping[str, str], now: datetime, min_ahead_s: float) -> datetime:
    """Everything about a BindAxb that does not need the pools; returns the expiry instant."""
    require(params, "PoolKey", "PhoneNoA", "PhoneNoB", "Expiration")
    a = check_phone(params, "PhoneNoA")
    b = check_phone(params, "PhoneNoB")
    if a == b:
        raise BusinessError(INVALID_PARAMETERS, "PhoneNoA and PhoneNoB must differ")
    expires = check_expiration(params["Expiration"], now, min_ahead_s)
    if params.get("PhoneNoX") and not is_phone_number(params["PhoneNoX"]):
        raise BusinessError(MOBILE_NUMBER_ILLEGAL, "PhoneNoX is not a valid phone number")
    optional_bool(params, "IsRecordingEnabled")
    optional_bool(params, "ASRStatus")
    optional_int(params, "CallDisplayType", 1, 1)
    optional_int(params, "CallTimeout", 0, 180)
    optional_call_restrict(params)
    optional_json(params, "RingConfig")
    optional_json(params, "DtmfConfig")
    return expires
