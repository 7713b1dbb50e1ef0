"""Trip lifecycle on the worker side: unbind a binding, move its Expiration, race-free with its bind.

An operation is a record of its own (``unbind:<key>``, ``extend:<key>:<yyyyMMddHHmmss>``) with the
bind's machinery: a lease per delivery, the poison counter, the cluster-wide limiter, the hold
(account refused, vendor down: :mod:`worker.hold`), retries with full jitter through the delay
queue, dead letters with the operation's code, the watchdog. :func:`attempt_op` is the story of one attempt:

    lease on the binding → look at the bind → nothing to do | wait | refuse | call → store

- **Unbind.** The bind's record decides: ``succeeded`` → ``UnbindSubscription`` with its
  SubsId/SecretNo (``isv.SUBS_NOT_EXIST`` = already gone = success); ``cancelled``, or
  ``dead_lettered`` with a definite code → nothing was bound: success without a call;
  ``axb.AMBIGUOUS_OUTCOME`` → dead letter (a binding may exist: reconcile); still ``pending`` or
  ``retrying`` → cancel it if none of its requests may have bound (one Lua script,
  :meth:`~worker.store.BindStore.try_cancel`), else wait (the delay queue, never a sleep) until it
  finishes, then unbind what it made.
- **Extend.** Waits for the bind the same way, then ``UpdateSubscription`` (``updateExpire``);
  the bind record's ``expires_at`` and its TTL (and its history's) follow, in the script that
  marks the operation succeeded. Extending a binding that is not live (unbound, cancelled,
  dead-lettered, expired, or with an unbind pending) dead-letters as ``axb.NOT_BOUND``. Only the
  latest extend asked for is applied: an older one still queued ends ``succeeded`` as
  ``superseded`` without a call.
- Operations on one binding reach the vendor one at a time (a lease on the binding), so an
  unbind and an extend, or two extends, never cross on the wire.
- Both vendor actions are idempotent, so a request whose answer was lost is simply sent again
  with a fresh signature (unlike BindAxb, no proof by replay is needed).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker import errors
from worker.errors import Handling, InvalidRequestError, VendorError
from worker.hold import Hold
from worker.limiter import late_allowance
from worker.metrics import BINDS, LIFECYCLE, LIMITER_WAIT, VENDOR_LATENCY
from worker.pipeline import (
    LEASE_EXTRA_S,
    Outcome,
    _dead_letter,
    _finish,
    _hist,
    note_answer,
    pass_hold,
    retry_or_dead_letter,
    wait_out_hold,
)
from worker.runtime import Runtime
from worker.store import CANCELLED, DEAD_LETTERED, PENDING, SUCCEEDED, BindRecord, now_ms
from worker.vendor import (
    UpdateSubscriptionRequest,
    VendorResponse,
    format_expiration,
    parse_expiration,
    parse_request,
)

log = logging.getLogger("axb.lifecycle")

WAITING = "axb.WAITING"  # the code an operation shows while it waits for its bind
WAIT_MIN_S = 0.05
WAIT_MAX_S = 1.0
BUSY_S = 0.1  # another operation holds the binding: look again this soon


@dataclass(frozen=True)
class _Done:
    """Nothing (more) to call: the operation succeeded, perhaps as a no-op."""

    outcome: str
    message: str
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Wait:
    reason: str


@dataclass(frozen=True)
class _Fail:
    code: str
    message: str


@dataclass(frozen=True)
class _Call:
    vendor_action: str
    pool: str
    send: Callable[[], VendorResponse]
    result: dict[str, Any]
    effect: str = ""  # "unbound" | "extended": what success does to the bind record
    expires_ms: int = 0
    expiration: str = ""


_Plan = _Done | _Wait | _Fail | _Call


def attempt_op(rt: Runtime, rec: BindRecord, hold: Hold | None = None, delivery: str = "") -> Outcome:
    """One attempt of an unbind or extend record (called by the task under the record's lease;
    ``hold`` is the hold in force as the delivery's start read it)."""
    token = uuid.uuid4().hex
    lease_s = rt.settings.hard_time_limit_s + LEASE_EXTRA_S
    target = _target(rec)
    if target and not rt.store.acquire_target(target, token, lease_s):
        return _wait(rt, rec, "another operation on this binding is under way", BUSY_S)
    try:
        plan = _plan_unbind(rt, rec, target) if rec.action == "unbind" else _plan_extend(rt, rec, target)
        return _carry_out(rt, rec, plan, target, hold, delivery or token)
    finally:
        if target:
            rt.store.release_target(target, token)


def _target(rec: BindRecord) -> str:
    """The bind this operation acts on (also when a replay recreated the record without it)."""
    return rec.target or str(rec.request.get("IdempotencyKey") or "")


# --- deciding ----------------------------------------------------------------------------------------


def _dto(t: BindRecord) -> dict[str, str]:
    r = t.result or {}
    return {"PoolKey": t.pool, "SubsId": str(r.get("SubsId", "")), "SecretNo": str(r.get("SecretNo", ""))}


def _plan_unbind(rt: Runtime, rec: BindRecord, target: str) -> _Plan:
    req = rec.request
    now = now_ms()
    explicit = {k: str(req[k]) for k in ("PoolKey", "SubsId", "SecretNo") if req.get(k)}
    t = rt.store.get(target) if target else None
    if t is None:
        if len(explicit) == 3:
            return _Call(
                "UnbindSubscription",
                explicit["PoolKey"],
                lambda: rt.client.unbind_subscription(
                    explicit["PoolKey"], explicit["SecretNo"], explicit["SubsId"]
                ),
                {**explicit, "Outcome": "unbound"},
            )
        return _Done("gone", "no bind record any more (its result expired): nothing is live")
    if t.status == CANCELLED:
        return _Done("cancelled", "the bind was cancelled before any request could bind")
    if t.status == DEAD_LETTERED:
        if t.code == errors.AMBIGUOUS_OUTCOME:
            return _Fail(
                errors.AMBIGUOUS_OUTCOME,
                f"bind {t.key!r} ended {errors.AMBIGUOUS_OUTCOME}: a binding may exist that we cannot"
                " name; reconcile (axb dlq show), then unbind it by SubsId",
            )
        return _Done("never_bound", f"the bind was dead-lettered ({t.code}): nothing was bound")
    if t.status == SUCCEEDED:
        if t.unbound_at:
            return _Done("already_unbound", f"already unbound by {t.unbind_key or 'an earlier unbind'}")
        dto = _dto(t)
        if t.expires_at and t.expires_at <= now:
            return _Done("expired", "the binding has expired: its X number is free already", dto)
        return _Call(
            "UnbindSubscription",
            t.pool,
            lambda: rt.client.unbind_subscription(t.pool, dto["SecretNo"], dto["SubsId"]),
            {**dto, "Outcome": "unbound"},
            effect="unbound",
        )
    # The bind is still pending or retrying: cancel it if nothing of it can have bound.
    settled = rt.store.try_cancel(t.key, rec.key)
    if settled == 1:
        _count_cancelled(t)
        return _Done("cancelled", "the bind was cancelled before any request could bind")
    if settled == 2:
        if rec.deadline and now >= rec.deadline:
            return _Done("expired", "the binding's Expiration passed before its bind finished")
        return _Wait(f"bind {t.key!r} has a request in flight; unbinding once it finishes")
    return _Wait(f"bind {t.key!r} just finished")  # 0 / -1: look again at once


def _count_cancelled(t: BindRecord) -> None:
    BINDS.labels("cancelled", errors.CANCELLED).inc()
    log.info("bind key=%s status=cancelled code=%s attempts=%d", t.key, errors.CANCELLED, t.attempts)


def _plan_extend(rt: Runtime, rec: BindRecord, target: str) -> _Plan:
    now = now_ms()
    try:
        moment = parse_expiration(rec.request.get("Expiration"), check_future=False)
    except InvalidRequestError as err:
        return _Fail(err.code, str(err))
    expiration = format_expiration(moment)
    expires_ms = int(moment.timestamp() * 1000)
    t = rt.store.get(target) if target else None
    if t is None:
        return _Fail(errors.NOT_BOUND, "no bind record for this key (never made, or its result expired)")
    if rec.seq and t.extend_seq > rec.seq:
        return _Done("superseded", "a later extend of this binding was asked for; it wins")
    if t.status == CANCELLED:
        return _Fail(errors.NOT_BOUND, "the bind was cancelled by an unbind: nothing to extend")
    if t.status == DEAD_LETTERED:
        return _Fail(errors.NOT_BOUND, f"the bind was dead-lettered ({t.code}): nothing to extend")
    if t.status == SUCCEEDED:
        if t.unbound_at:
            return _Fail(errors.NOT_BOUND, "the binding was unbound: nothing to extend")
        if t.cancel_requested:
            return _Fail(errors.NOT_BOUND, f"an unbind ({t.cancel_requested}) was asked for: not extending")
        if t.expires_at and t.expires_at <= now:
            return _Fail(errors.NOT_BOUND, "the binding has expired: nothing to extend")
        dto = _dto(t)
        try:
            update = parse_request(
                UpdateSubscriptionRequest,
                {
                    "PoolKey": t.pool,
                    "SubsId": dto["SubsId"],
                    "PhoneNoX": dto["SecretNo"],
                    "OperateType": "updateExpire",
                    "Expiration": expiration,
                },
                check_future=False,
            )
        except InvalidRequestError as err:
            return _Fail(err.code, str(err))
        return _Call(
            "UpdateSubscription",
            t.pool,
            lambda: rt.client.update_subscription(update),
            {**dto, "Expiration": expiration, "Outcome": "extended"},
            effect="extended",
            expires_ms=expires_ms,
            expiration=expiration,
        )
    if t.cancel_requested:
        return _Fail(errors.NOT_BOUND, f"an unbind ({t.cancel_requested}) was asked for: not extending")
    return _Wait(f"bind {t.key!r} is {t.status}; extending once it is bound")


# --- doing -------------------------------------------------------------------------------------------


def _wait(rt: Runtime, rec: BindRecord, reason: str, delay_s: float | None = None) -> Outcome:
    """Look again later through the delay queue; waiting uses no attempt."""
    if delay_s is None:
        # Quick at first (a bind in flight usually answers within a vendor round trip), then
        # once a second at most.
        age_s = max(0.0, (now_ms() - rec.created_at) / 1000)
        delay_s = min(WAIT_MAX_S, max(WAIT_MIN_S, age_s / 10))
    due = now_ms() + int(delay_s * 1000) + random.randint(0, 20)
    rt.store.schedule(rec.key, due_ms=due, status=rec.status or PENDING, code=WAITING, message=reason)
    return Outcome(rec.key, rec.status or PENDING, WAITING, rec.attempts)


def _expire_at_s(rt: Runtime, rec: BindRecord, expires_ms: int = 0) -> int:
    return max(expires_ms or rec.expires_at, now_ms()) // 1000 + rt.settings.result_ttl_extra_s


def _succeed(
    rt: Runtime,
    rec: BindRecord,
    target: str,
    *,
    outcome: str,
    message: str,
    result: dict[str, Any],
    request_id: str = "",
    hist: dict[str, Any] | None = None,
    effect: str = "",
    expires_ms: int = 0,
    expiration: str = "",
    latency_ms: float | None = None,
) -> Outcome:
    rt.store.op_succeed(
        rec.key,
        result={**result, "Outcome": outcome},
        request_id=request_id,
        expire_at_s=_expire_at_s(rt, rec, expires_ms),
        hist=hist,
        message=message,
        target=target,
        effect=effect,
        target_expires_ms=expires_ms,
        target_expire_at_s=_expire_at_s(rt, rec, expires_ms),
        expiration=expiration,
    )
    LIFECYCLE.labels(rec.action, "succeeded", outcome).inc()
    return _finish(rt, rec.key, latency_ms)


def _carry_out(
    rt: Runtime, rec: BindRecord, plan: _Plan, target: str, hold: Hold | None, delivery: str
) -> Outcome:
    s = rt.settings
    key = rec.key
    if isinstance(plan, _Done):
        return _succeed(rt, rec, target, outcome=plan.outcome, message=plan.message, result=plan.result)
    if isinstance(plan, _Fail):
        _dead_letter(rt, key, code=plan.code, message=plan.message, request_id=rec.request_id)
        return _finish(rt, key)
    if isinstance(plan, _Wait):
        if rec.deadline and now_ms() >= rec.deadline:
            _dead_letter(rt, key, code=errors.DEADLINE_EXCEEDED, message=f"gave up waiting: {plan.reason}")
            return _finish(rt, key)
        return _wait(rt, rec, plan.reason)

    now = now_ms()
    if rec.deadline and now >= rec.deadline:
        last = f" (last: {rec.code}: {rec.message})" if rec.code and rec.code != WAITING else ""
        _dead_letter(
            rt, key, code=errors.DEADLINE_EXCEEDED, message=f"deadline passed before the {rec.action}{last}"
        )
        return _finish(rt, key)

    # The hold, as for binds (read when the delivery started): wait, or call (perhaps as the probe).
    held, probe = pass_hold(rt, rec, hold, delivery)
    if held is not None:
        return held

    # The cluster-wide rate limit, as for binds.
    limits = rt.limits(plan.pool)
    reservation = rt.limiter.acquire_on_time(
        limits, max_wait_s=s.inline_wait_max_s, late_s=late_allowance(limits)[0]
    )
    if not reservation.granted:
        due = now + int(reservation.wait_s * 1000) + random.randint(0, 20)
        rt.store.schedule(key, due_ms=due, status=rec.status or PENDING, code=rec.code, message=rec.message)
        return Outcome(key, rec.status, rec.code, rec.attempts)
    LIMITER_WAIT.observe(reservation.wait_s)  # already slept by acquire_on_time

    attempt = rt.store.begin_attempt(key, None, account=s.access_key_id, probe_token=probe)
    if attempt == -3:
        return wait_out_hold(rt, rec, rt.holds.current(s.access_key_id), keep_inflight=False)
    if attempt < 0:
        return _finish(rt, key)
    started = time.monotonic()
    try:
        response = plan.send()
    except VendorError as err:
        latency_ms = (time.monotonic() - started) * 1000
        VENDOR_LATENCY.labels(plan.vendor_action, err.handling.value).observe(latency_ms / 1000)
        return _on_error(rt, rec, err, attempt=attempt, latency_ms=latency_ms, probe=probe)
    latency_ms = (time.monotonic() - started) * 1000
    VENDOR_LATENCY.labels(plan.vendor_action, "ok").observe(latency_ms / 1000)
    note_answer(rt, None, probe)
    gone = response.code == "isv.SUBS_NOT_EXIST"
    return _succeed(
        rt,
        rec,
        target,
        outcome="already_gone" if gone else str(plan.result.get("Outcome", "ok")),
        message="the vendor had no such subscription any more (isv.SUBS_NOT_EXIST)" if gone else "",
        result=plan.result,
        request_id=response.request_id,
        hist=_hist(attempt, response.code or "OK", response.request_id, latency_ms, False),
        effect=plan.effect,
        expires_ms=plan.expires_ms,
        expiration=plan.expiration,
        latency_ms=latency_ms,
    )


def _on_error(
    rt: Runtime, rec: BindRecord, err: VendorError, *, attempt: int, latency_ms: float, probe: str = ""
) -> Outcome:
    s = rt.settings
    key = rec.key
    hist = _hist(attempt, err.code, err.request_id, latency_ms, False, err.http_status)
    common: dict[str, Any] = {"request_id": err.request_id, "http_status": err.http_status, "hist": hist}
    handling = err.handling
    vendor_hold = note_answer(rt, err, probe)
    if handling is Handling.ACCOUNT:
        rt.holds.hold_account(s.access_key_id, err.code, err.vendor_message or str(err), s.account_hold_s)
    if handling in (Handling.TERMINAL, Handling.ACCOUNT):
        _dead_letter(rt, key, code=err.code, message=err.vendor_message or str(err), **common)
        return _finish(rt, key, latency_ms)
    if handling is Handling.CLOCK and rec.code == err.code:
        _dead_letter(rt, key, code=err.code, message="the vendor rejected our timestamp twice", **common)
        return _finish(rt, key, latency_ms)

    # Retryable, throttled, or ambiguous (sent, no usable answer): unbinding and moving an
    # expiry are idempotent, so the next attempt signs a fresh request.
    if vendor_hold is not None:
        return wait_out_hold(rt, rec, vendor_hold, keep_inflight=False, common=common, outage=True)
    return retry_or_dead_letter(
        rt, rec, err, attempt, common, latency_ms, keep_inflight=False, no_number_backoff=False
    )
