"""Refusals: pydantic's ``ValidationError`` turned into the one :class:`~worker.errors.InvalidRequestError`.

Validation catches what the vendor would reject, and :func:`parse_request` reports it naming
each field by its API name and the vendor code the call would have earned::

    PhoneNoA: not a mobile or landline number (isv.MOBILE_NUMBER_ILLEGAL)

No message ever quotes an input value, and pydantic's own error (which holds the inputs) is
never chained.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from worker.errors import FieldProblem, InvalidRequestError
from worker.masking import mask_text
from worker.vendor.fields import (
    EXPIRE_DATE_ILLEGAL,
    INVALID_PARAMETERS,
    MOBILE_NUMBER_ILLEGAL,
    REQUIRED,
    FieldError,
    check_expiration,
)
from worker.vendor.requests import ApiRequest, BindAxbRequest

RequestT = TypeVar("RequestT", bound=ApiRequest)

# A missing required field gets the code of its own format check.
_MISSING_CODE = {
    "PhoneNoA": MOBILE_NUMBER_ILLEGAL,
    "PhoneNoB": MOBILE_NUMBER_ILLEGAL,
    "PhoneNoX": MOBILE_NUMBER_ILLEGAL,
    "SecretNo": MOBILE_NUMBER_ILLEGAL,
    "Expiration": EXPIRE_DATE_ILLEGAL,
}


def _field_problems(exc: ValidationError, model: type[BaseModel]) -> list[FieldProblem]:
    """One :class:`FieldProblem` per pydantic error, by API name; never quotes an input value."""
    aliases = {name: f.alias or name for name, f in model.model_fields.items()}
    action = model.__name__.removesuffix("Request")
    out: list[FieldProblem] = []
    for err in exc.errors(include_url=False, include_input=False, include_context=True):
        loc = err.get("loc", ())
        field = mask_text(aliases.get(str(loc[0]), str(loc[0]))) if loc else ""
        etype = err.get("type", "")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
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
    model: type[RequestT],
    data: Mapping[str, Any] | RequestT,
    *,
    check_future: bool = True,
    now: datetime | None = None,
) -> RequestT:
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
        problems = _field_problems(exc, model)
    # Raised outside the except block: the pydantic error (which holds the inputs) is not chained.
    raise InvalidRequestError(problems) from None


def parse_bind_request(
    data: Mapping[str, Any] | BindAxbRequest, *, check_future: bool = True, now: datetime | None = None
) -> BindAxbRequest:
    """Validate a BindAxb request or raise :class:`InvalidRequestError` naming each bad field and
    the vendor code the call would have earned; see :func:`parse_request`."""
    return parse_request(BindAxbRequest, data, check_future=check_future, now=now)


def parse_expiration(value: Any, *, check_future: bool = True, now: datetime | None = None) -> datetime:
    """An ``Expiration`` (``yyyy-MM-dd HH:mm:ss`` UTC+8, ISO 8601, or a datetime) as an aware UTC+8
    datetime, more than a minute from now unless ``check_future=False``; else
    :class:`InvalidRequestError` naming ``Expiration`` and ``isv.EXPIRE_DATE_ILLEGAL``."""
    try:
        return check_expiration(value, check_future=check_future, now=now)
    except FieldError as exc:
        problem = exc
    raise InvalidRequestError.single("Expiration", problem.code, problem.reason) from None
