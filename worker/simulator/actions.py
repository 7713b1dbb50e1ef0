"""The business logic of each action: BindAxb, UnbindSubscription, QuerySubscriptionDetail and
UpdateSubscription, run against a :class:`BindingBook` (simulator lock held).

Each handler returns the extra fields of a successful answer or raises :class:`BusinessError`.
"""

from __future__ import annotations

from typing import Any

from worker.simulator.bindings import Binding, BindingBook, Pool
from worker.simulator.config import SimulatorConfig
from worker.simulator.gateway import Call
from worker.simulator.validation import (
    INVALID_PARAMETERS,
    BusinessError,
    check_bind_axb,
    check_expiration,
    check_phone,
    optional_bool,
    optional_call_restrict,
    optional_int,
    require,
)

UPDATE_OPERATIONS = frozenset(
    {
        "updateNoA",
        "updateNoB",
        "updateExpire",
        "updateAxgGroup",
        "updateCallRestrict",
        "updateCallDisplayType",
        "updateOutId",
        "updateIsRecordingEnabled",
    }
)


def dispatch(book: BindingBook, config: SimulatorConfig, call: Call, entry: dict[str, Any]) -> dict[str, Any]:
    """Run ``call`` (``entry`` is its ledger entry; BindAxb records its SubsId and X there)."""
    if call.action == "BindAxb":
        return bind_axb(book, config, call, entry)
    if call.action == "UnbindSubscription":
        return unbind(book, call.params)
    if call.action == "QuerySubscriptionDetail":
        return query(book, call.params)
    return update(book, config, call.params)


def bind_axb(book: BindingBook, config: SimulatorConfig, call: Call, entry: dict[str, Any]) -> dict[str, Any]:
    params = call.params
    now = book.now()
    expires = check_bind_axb(params, now, config.min_expiration_ahead_s)
    pool = book.pool(params)
    a, b = params["PhoneNoA"], params["PhoneNoB"]
    x = pool.choose_x(params.get("PhoneNoX") or None, a, b, config.max_pairs_per_x)
    binding = Binding(
        subs_id=book.new_subs_id(),
        pool_key=pool.key,
        secret_no=x,
        phone_no_a=a,
        phone_no_b=b,
        expires_at=expires,
        created_at=now,
        request_id=entry["request_id"],
        nonce=call.nonce,
        out_id=params.get("OutId") or None,
        out_order_id=params.get("OutOrderId") or None,
        need_record=bool(optional_bool(params, "IsRecordingEnabled")),
        call_restrict=optional_call_restrict(params),
        asr_status=optional_bool(params, "ASRStatus"),
        asr_model_id=params.get("ASRModelId") or None,
    )
    book.add(pool, binding)
    entry.update(subs_id=binding.subs_id, secret_no=x)
    return {"SecretBindDTO": {"SecretNo": x, "SubsId": binding.subs_id, "Extension": binding.extension}}


def unbind(book: BindingBook, params: dict[str, str]) -> dict[str, Any]:
    require(params, "PoolKey", "SecretNo", "SubsId")
    binding = book.live_binding(params, book.pool(params), "SecretNo")
    book.end(binding, "unbound")
    return {}


def query(book: BindingBook, params: dict[str, str]) -> dict[str, Any]:
    require(params, "PoolKey", "PhoneNoX", "SubsId")
    pool = book.pool(params)
    found = book.by_subs_id.get(params["SubsId"])
    if found is None or found.pool_key != pool.key or found.secret_no != params["PhoneNoX"]:
        raise BusinessError("isv.SUBS_NOT_EXIST", "subscription does not exist")
    return {"SecretBindDetailDTO": found.detail_dto()}


def update(book: BindingBook, config: SimulatorConfig, params: dict[str, str]) -> dict[str, Any]:
    require(params, "PoolKey", "SubsId", "PhoneNoX", "OperateType")
    operation = params["OperateType"]
    if operation not in UPDATE_OPERATIONS:
        raise BusinessError(INVALID_PARAMETERS, "OperateType is not supported")
    pool = book.pool(params)
    binding = book.live_binding(params, pool, "PhoneNoX")
    if operation == "updateExpire":
        require(params, "Expiration")
        binding.expires_at = check_expiration(params["Expiration"], book.now(), config.min_expiration_ahead_s)
        book.schedule_expiry(binding)
    elif operation in ("updateNoA", "updateNoB"):
        update_number(pool, binding, "PhoneNoA" if operation == "updateNoA" else "PhoneNoB", params)
    elif operation == "updateCallRestrict":
        binding.call_restrict = optional_call_restrict(params)
    elif operation == "updateIsRecordingEnabled":
        require(params, "IsRecordingEnabled")
        binding.need_record = bool(optional_bool(params, "IsRecordingEnabled"))
    elif operation == "updateOutId":
        binding.out_id = params.get("OutId") or None
    elif operation == "updateCallDisplayType":
        require(params, "CallDisplayType")
        optional_int(params, "CallDisplayType", 1, 1)
        binding.extra["CallDisplayType"] = params["CallDisplayType"]
    else:  # updateAxgGroup
        require(params, "GroupId")
        binding.extra["GroupId"] = params["GroupId"]
    return {}


def update_number(pool: Pool, binding: Binding, name: str, params: dict[str, str]) -> None:
    """Replace PhoneNoA or PhoneNoB (``name``) of a live binding, keeping its X."""
    require(params, name)
    new = check_phone(params, name)
    other = binding.phone_no_b if name == "PhoneNoA" else binding.phone_no_a
    if new == other:
        raise BusinessError(INVALID_PARAMETERS, "PhoneNoA and PhoneNoB must differ")
    holder = pool.on_x[binding.secret_no].get(new)
    if holder is not None and holder != binding.subs_id:
        raise BusinessError("isv.BIND_CONFLICT", f"{name} is already bound on PhoneNoX")
    pool.detach(binding)
    if name == "PhoneNoA":
        binding.phone_no_a = new
    else:
        binding.phone_no_b = new
    pool.attach(binding)
