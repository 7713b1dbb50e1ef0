"""The one failure path of every delivery (bind, unbind, extend): the triage of a vendor error,
the retry plan, and the dead letter at the deadline or when the attempts are used up.

As dramatiq's ``middleware/retries.py``: this is the one place that decides retry or fail.
"""

from __future__ import annotations

import logging
import random
from typing import Any, NamedTuple

from worker import errors
from worker.errors import AmbiguousVendorError, Handling, VendorError, outage_reason
from worker.execution.ambiguous import ambiguous_dead_letter, on_nonce_used
from worker.execution.hold_gate import note_answer, wait_out_hold
from worker.execution.outcome import Outcome, attempt_entry, dead_letter, finish
from worker.execution.plans import WAITING
from worker.metrics import RETRIES
from worker.runtime import Runtime
from worker.store import RETRYING, BindRecord, now_ms

log = logging.getLogger("axb.bind")

# Throttled answers slow the cluster down; they do not use up the retry budget, up to this cap.
MAX_THROTTLES = 100


def full_jitter(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, initial * 2**(attempt-1))]."""
    ceiling = min(max_s, initial_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0, ceiling)


def dead_letter_at_deadline(rt: Runtime, rec: BindRecord, what: str, request_id: str = "") -> Outcome:
    """The deadline passed before ``what`` (``bind succeeded``, ``unbind``…): dead-lettered as
    ``axb.DEADLINE_EXCEEDED``, naming the last code the record saw."""
    last = f" (last: {rec.code}: {rec.message})" if rec.code and rec.code != WAITING else ""
    dead_letter(
        rt,
        rec.key,
        code=errors.DEADLINE_EXCEEDED,
        message=f"deadline passed before the {what}{last}",
        request_id=request_id,
    )
    return finish(rt, rec.key)


def on_vendor_error(
    rt: Runtime,
    rec: BindRecord,
    err: VendorError,
    *,
    attempt: int,
    latency_ms: float,
    probe: str = "",
    replay: bool = False,
    bind: bool = False,
    rebind: bool = False,
) -> Outcome:
    """Triage of a vendor error: dead letter, wait out the hold, or retry.

    ``bind``: a BindAxb call, whose request is kept while its fate is unknown (to be proved by
    re-sending it) and whose ``NO_NUMBER`` answers back off on their own schedule. Unbinding and
    moving an expiry are idempotent: their next attempt signs a fresh request. ``rebind``: this
    bind attempt was signed afresh after an ambiguous first copy (:mod:`.ambiguous`).
    """
    s = rt.settings
    key = rec.key
    hist = attempt_entry(
        attempt, err.code, err.request_id, latency_ms, replay, err.http_status, rebind=rebind
    )
    handling = err.handling
    common: dict[str, Any] = {"request_id": err.request_id, "http_status": err.http_status, "hist": hist}
    vendor_hold = note_answer(rt, err, probe)

    if bind and err.code == "SignatureNonceUsed":
        return on_nonce_used(rt, rec, attempt=attempt, replay=replay, latency_ms=latency_ms, common=common)

    if handling is Handling.ACCOUNT:
        # The vendor refuses the account itself: every other call would fail the same way.
        # Hold the whole cluster's calls for a while instead of storming; one probe per pause.
        rt.holds.hold_account(s.access_key_id, err.code, err.vendor_message or str(err), s.account_hold_s)
    if handling in (Handling.TERMINAL, Handling.ACCOUNT):
        dead_letter(rt, key, code=err.code, message=err.vendor_message or str(err), **common)
        return finish(rt, key, latency_ms)

    if handling is Handling.CLOCK and rec.code == err.code:
        clock_hint = ": check this host's clock" if bind else ""
        dead_letter(
            rt, key, code=err.code, message=f"the vendor rejected our timestamp twice{clock_hint}", **common
        )
        return finish(rt, key, latency_ms)

    # Keep the stored signed request while its fate is unknown: the lost first copy (this
    # was a replay that did not get through) or this very attempt (sent, no answer).
    ambiguous = isinstance(err, AmbiguousVendorError)
    keep_inflight = bind and (ambiguous or (replay and not err.sent))
    if vendor_hold is not None:
        # The vendor is down for the whole cluster: wait for a probe's answer, spending nothing.
        return wait_out_hold(rt, rec, vendor_hold, keep_inflight=keep_inflight, common=common, outage=True)

    return retry_or_dead_letter(
        rt, rec, err, attempt, common, latency_ms, keep_inflight=keep_inflight, no_number_backoff=bind
    )


class RetryPlan(NamedTuple):
    throttled: bool
    delay_s: float
    due_ms: int
    exhausted: bool
    # Failed on the vendor's side (unreachable, 5xx): not counted, and bounded by the deadline only.
    outage: bool


def plan_retry(
    rt: Runtime, rec: BindRecord, err: VendorError, attempt: int, *, no_number_backoff: bool
) -> RetryPlan:
    """After a retryable answer: slow the cluster if it was a throttle, and work out when to try
    again and whether the attempts are used up. Throttled answers do not count towards
    ``AXB_MAX_ATTEMPTS`` (up to ``MAX_THROTTLES``), and neither do failures on the vendor's side
    (unreachable, 5xx) of a record with a deadline: the deadline alone bounds those."""
    s = rt.settings
    handling = err.handling
    throttled = handling is Handling.THROTTLED
    if throttled:
        # Flow control is counted per account: slow the account scope, not the pool's.
        rt.limiter.throttled(rt.limits(rec.pool)[:1], retry_after_s=err.retry_after_s)
    if no_number_backoff and handling is Handling.NO_NUMBER:
        delay_s = full_jitter(attempt, s.no_number_backoff_initial_s, s.no_number_backoff_max_s)
    elif handling is Handling.CLOCK:
        delay_s = 0.0
    else:
        delay_s = full_jitter(attempt, s.backoff_initial_s, s.backoff_max_s)
    if err.retry_after_s:
        delay_s = max(delay_s, err.retry_after_s)
    outage = bool(rec.deadline_ms) and bool(outage_reason(err))
    counted = attempt - rec.throttles - rec.outages - (1 if throttled or outage else 0)
    exhausted = (not outage and counted >= s.max_attempts) or (
        throttled and rec.throttles + 1 >= MAX_THROTTLES
    )
    due_ms = now_ms() + int(delay_s * 1000)
    if outage:
        due_ms = min(due_ms, rec.deadline_ms)  # the next start dead-letters it if the deadline has come
    return RetryPlan(throttled, delay_s, due_ms, exhausted, outage)


def retry_or_dead_letter(
    rt: Runtime,
    rec: BindRecord,
    err: VendorError,
    attempt: int,
    common: dict[str, Any],
    latency_ms: float,
    *,
    keep_inflight: bool,
    no_number_backoff: bool,
) -> Outcome:
    """After a retryable answer (binds and lifecycle operations): the delay queue, or the dead
    letters once the attempts or the time before the deadline are used up. A kept request in
    flight makes such a dead letter ``axb.AMBIGUOUS_OUTCOME``."""
    key = rec.key
    throttled, delay_s, due_ms, exhausted, outage = plan_retry(
        rt, rec, err, attempt, no_number_backoff=no_number_backoff
    )
    if exhausted or (not outage and rec.deadline_ms and due_ms >= rec.deadline_ms):
        why = "retries exhausted" if exhausted else "no time left before the deadline"
        message = f"{why}; last: {err.code}: {err.vendor_message}"
        if keep_inflight:  # the kept request's fate is unknown
            return ambiguous_dead_letter(rt, rec, message=message, latency_ms=latency_ms, **common)
        dead_letter(rt, key, code=err.code, message=message, **common)
        return finish(rt, key, latency_ms)

    RETRIES.labels(err.code).inc()
    rt.store.schedule(
        key,
        due_ms=due_ms,
        status=RETRYING,
        code=err.code,
        message=err.vendor_message,
        keep_inflight=keep_inflight,
        throttled=throttled,
        outage=outage,
        durable=True,
        **common,
    )
    log.info(
        "%s key=%s status=retrying code=%s attempts=%d retry_in_s=%.2f request_id=%s",
        rec.action or "bind",
        key,
        err.code,
        attempt,
        delay_s,
        err.request_id or "-",
    )
    return Outcome(key, RETRYING, err.code, attempt)
