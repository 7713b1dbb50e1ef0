"""One attempt of a trip lifecycle operation (unbind a binding, move its Expiration), race-free
with its bind:

    lease on the binding → look at the bind (:mod:`.unbind`, :mod:`.extend`) → nothing to do |
    wait | refuse | call → store

An operation is a record of its own (``unbind:<key>``, ``extend:<key>:<yyyyMMddHHmmss>``) with the
bind's machinery: a lease per delivery, the poison counter (:mod:`.delivery`), the cluster-wide
limiter, the hold (account refused, vendor down: :mod:`.hold`), retries with full jitter through
the delay queue and dead letters with the operation's code (:mod:`.failure`), the watchdog.

- Operations on one binding reach the vendor one at a time (a lease on the binding), so an
  unbind and an extend, or two extends, never cross on the wire.
- Both vendor actions are idempotent, so a request whose answer was lost is simply sent again
  with a fresh signature (unlike BindAxb, no proof by replay is needed).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from worker import errors
from worker.execution.calling import requeue_for_slot, timed_call
from worker.execution.extend import plan_extend
from worker.execution.failure import dead_letter_at_deadline, on_vendor_error
from worker.execution.hold import Hold
from worker.execution.hold_gate import note_answer, pass_hold, wait_out_hold
from worker.execution.lease import lease_seconds
from worker.execution.outcome import Outcome, attempt_entry, dead_letter, finish
from worker.execution.plans import WAITING, Done, Fail, Plan, Wait
from worker.execution.unbind import plan_unbind
from worker.limiter import late_allowance
from worker.metrics import LIFECYCLE, LIMITER_WAIT
from worker.runtime import Runtime
from worker.store import PENDING, Begin, BindRecord, now_ms

WAIT_MIN_S = 0.05
WAIT_MAX_S = 1.0
BUSY_S = 0.1  # another operation holds the binding: look again this soon


def attempt_operation(rt: Runtime, rec: BindRecord, hold: Hold | None = None, delivery: str = "") -> Outcome:
    """One attempt of an unbind or extend record (under the record's lease; ``hold`` is the hold
    in force as the delivery's start read it)."""
    token = uuid.uuid4().hex
    target = _target(rec)
    if target and not rt.store.acquire_target(target, token, lease_seconds(rt.settings)):
        return _wait(rt, rec, "another operation on this binding is under way", BUSY_S)
    try:
        plan = plan_unbind(rt, rec, target) if rec.action == "unbind" else plan_extend(rt, rec, target)
        return _carry_out(rt, rec, plan, target, hold, delivery or token)
    finally:
        if target:
            rt.store.release_target(target, token)


def _target(rec: BindRecord) -> str:
    """The bind this operation acts on (also when a replay recreated the record without it)."""
    return rec.target or str(rec.request.get("IdempotencyKey") or "")


def _wait(rt: Runtime, rec: BindRecord, reason: str, delay_s: float | None = None) -> Outcome:
    """Look again later through the delay queue; waiting uses no attempt."""
    if delay_s is None:
        # Quick at first (a bind in flight usually answers within a vendor round trip), then
        # once a second at most.
        age_s = max(0.0, (now_ms() - rec.created_at_ms) / 1000)
        delay_s = min(WAIT_MAX_S, max(WAIT_MIN_S, age_s / 10))
    due_ms = now_ms() + int(delay_s * 1000) + random.randint(0, 20)
    rt.store.schedule(rec.key, due_ms=due_ms, status=rec.status or PENDING, code=WAITING, message=reason)
    return Outcome(rec.key, rec.status or PENDING, WAITING, rec.attempts)


def _expire_at_s(rt: Runtime, rec: BindRecord, expires_ms: int = 0) -> int:
    return max(expires_ms or rec.expires_at_ms, now_ms()) // 1000 + rt.settings.result_ttl_extra_s


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
    return finish(rt, rec.key, latency_ms)


def _carry_out(
    rt: Runtime, rec: BindRecord, plan: Plan, target: str, hold: Hold | None, delivery: str
) -> Outcome:
    s = rt.settings
    key = rec.key
    if isinstance(plan, Done):
        return _succeed(rt, rec, target, outcome=plan.outcome, message=plan.message, result=plan.result)
    if isinstance(plan, Fail):
        dead_letter(rt, key, code=plan.code, message=plan.message, request_id=rec.request_id)
        return finish(rt, key)
    if isinstance(plan, Wait):
        if rec.deadline_ms and now_ms() >= rec.deadline_ms:
            dead_letter(rt, key, code=errors.DEADLINE_EXCEEDED, message=f"gave up waiting: {plan.reason}")
            return finish(rt, key)
        return _wait(rt, rec, plan.reason)

    if rec.deadline_ms and now_ms() >= rec.deadline_ms:
        return dead_letter_at_deadline(rt, rec, rec.action)

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
        requeue_for_slot(rt, rec, reservation.wait_s)
        return Outcome(key, rec.status, rec.code, rec.attempts)
    LIMITER_WAIT.observe(reservation.wait_s)  # already slept by acquire_on_time

    attempt = rt.store.begin_attempt(key, None, account=s.access_key_id, probe_token=probe)
    if attempt == Begin.HELD:
        return wait_out_hold(rt, rec, rt.holds.current(s.access_key_id), keep_inflight=False)
    if attempt < 0:
        return finish(rt, key)
    response, err, latency_ms = timed_call(plan.vendor_action, plan.send)
    if err is not None:
        return on_vendor_error(rt, rec, err, attempt=attempt, latency_ms=latency_ms, probe=probe)
    assert response is not None
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
        hist=attempt_entry(attempt, response.code or "OK", response.request_id, latency_ms, False),
        effect=plan.effect,
        expires_ms=plan.expires_ms,
        expiration=plan.expiration,
        latency_ms=latency_ms,
    )
