"""One bind attempt, as a story: load → lease → deadline → rate limit → call → store or dead-letter.

The Celery task (``tasks/bind.py``) is a thin wrapper around :func:`run_bind`.

Why a bind is never silently made twice:

- one record per idempotency key, and a lease so that one delivery at a time works on it;
- before a call goes out, the signed request is written to the record (``inflight``);
- if the answer is lost (read timeout, reset, a crash of this worker), the next attempt does
  not sign a new request: it re-sends the stored one, byte for byte, same nonce. The vendor
  answers ``SignatureNonceUsed`` exactly when the first copy reached it: then the bind is
  dead-lettered as ``axb.AMBIGUOUS_OUTCOME`` for on-call to reconcile, never retried blindly.
  Any other answer settles the question (the first copy never arrived).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from worker import errors, keys
from worker.errors import AmbiguousVendorError, Handling, InvalidRequestError, VendorError
from worker.metrics import BINDS, LIFECYCLE, LIMITER_WAIT, RETRIES, VENDOR_LATENCY
from worker.models import parse_bind_request
from worker.observability import report_dead_letter
from worker.runtime import Runtime
from worker.signing import SignedRequest
from worker.store import PENDING, RETRYING, BindRecord, now_ms

log = logging.getLogger("axb.bind")

# Deliveries that started and never finished (the process died): after this many, the
# message is poison and is dead-lettered instead of killing workers forever.
POISON_STARTS = 3
# Throttled answers slow the cluster down; they do not use up the retry budget, up to this cap.
MAX_THROTTLES = 100
LEASE_EXTRA_S = 5.0


@dataclass(frozen=True)
class Outcome:
    key: str
    status: str
    code: str = ""
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status, "code": self.code, "attempts": self.attempts}


def full_jitter(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, initial * 2**(attempt-1))]."""
    ceiling = min(max_s, initial_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0, ceiling)


def run_bind(rt: Runtime, key: str, delivery: str) -> Outcome:
    """Work on record ``key``: a bind, or (by its record's action) an unbind or extend."""
    rec = rt.store.get(key)
    if rec is None:
        log.warning("bind key=%s: no record (purged or expired); message dropped", key)
        return Outcome(key, "missing")
    attempt: Callable[[Runtime, BindRecord], Outcome] = _attempt
    if rec.action != "bind":
        from worker.lifecycle import attempt_op

        attempt = attempt_op
    if rec.terminal:
        return Outcome(key, rec.status, rec.code, rec.attempts)
    due = rt.store.delayed_due_at(key)
    if due is not None and due > now_ms() + 50:
        # A stale copy of the message: the delay queue owns this key until it is due.
        return Outcome(key, rec.status, rec.code, rec.attempts)
    lease_s = rt.settings.hard_time_limit_s + LEASE_EXTRA_S
    if not rt.store.acquire_lease(key, delivery, lease_s):
        # Another delivery is working on it (or died holding the lease): look again once the
        # lease has run out. Never drop the message on the floor.
        rt.redis.zadd(rt.store.delayed_key, {key: now_ms() + int(lease_s * 1000)}, gt=True)
        return Outcome(key, "busy", rec.code, rec.attempts)
    try:
        starts = rt.store.note_start(key)
        if starts > POISON_STARTS:
            _dead_letter(
                rt,
                key,
                code=errors.POISON_MESSAGE,
                message=f"{starts - 1} deliveries died mid-attempt; not delivered again",
            )
            return _finish(rt, key)
        _fault_injection(key)
        outcome = attempt(rt, rec)
        rt.store.note_finish(key)
        return outcome
    finally:
        rt.store.release_lease(key, delivery)


def _fault_injection(key: str) -> None:
    """For the chaos suite only: ``AXB_FAULT_KILL_ON_KEY=<key>`` makes this process die (SIGKILL)
    in the middle of that key's attempt, every time: a poison message. Off unless set."""
    target = os.environ.get("AXB_FAULT_KILL_ON_KEY")
    if target and target == key:
        os.kill(os.getpid(), signal.SIGKILL)


def _dead_letter(rt: Runtime, key: str, *, code: str, message: str, **kw: Any) -> None:
    """Dead-letter ``key`` (record and stream in one script) and report it once to Sentry."""
    entry_id = rt.store.dead_letter(key, code=code, message=message, **kw)
    if entry_id is None:
        return
    action = keys.action_of(key)
    if action == "bind":
        BINDS.labels("dead_lettered", code).inc()
    else:
        LIFECYCLE.labels(action, "dead_lettered", code).inc()
    rec = rt.store.get(key)
    report_dead_letter(
        key=key,
        code=code,
        message=message,
        pool=rec.pool if rec else "",
        attempts=rec.attempts if rec else 0,
        request_id=str(kw.get("request_id") or ""),
        dlq_id=entry_id,
    )


def _finish(rt: Runtime, key: str, latency_ms: float | None = None) -> Outcome:
    rec = rt.store.get(key)
    if rec is None:
        return Outcome(key, "missing")
    _log_outcome(rec, latency_ms)
    return Outcome(key, rec.status, rec.code, rec.attempts)


def _log_outcome(rec: BindRecord, latency_ms: float | None = None) -> None:
    log.info(
        "%s key=%s status=%s code=%s attempts=%d latency_ms=%s request_id=%s pool=%s",
        rec.action or "bind",
        rec.key,
        rec.status,
        rec.code or "-",
        rec.attempts,
        f"{latency_ms:.1f}" if latency_ms is not None else "-",
        rec.request_id or "-",
        rec.pool or "-",
    )


def _attempt(rt: Runtime, rec: BindRecord) -> Outcome:
    s = rt.settings
    key = rec.key
    now = now_ms()
    limits = rt.limits(rec.pool)

    replay: SignedRequest | None = None
    if rec.inflight:
        replay = SignedRequest.from_json_dict(rec.inflight)
        if time.time() - replay.signed_at > s.replay_window_s or now >= rec.deadline:
            _dead_letter(
                rt,
                key,
                code=errors.AMBIGUOUS_OUTCOME,
                message=f"attempt {rec.attempts} was sent and never answered ({rec.code or 'no answer'});"
                " too late to re-send it for proof: the binding may exist, reconcile before replaying",
                request_id=rec.request_id,
            )
            return _finish(rt, key)
    elif now >= rec.deadline:
        last = f" (last: {rec.code}: {rec.message})" if rec.code else ""
        _dead_letter(
            rt,
            key,
            code=errors.DEADLINE_EXCEEDED,
            message=f"deadline passed before the bind succeeded{last}",
            request_id=rec.request_id,
        )
        return _finish(rt, key)

    try:
        request = parse_bind_request(rec.request, check_future=False)
    except InvalidRequestError as err:
        _dead_letter(rt, key, code=err.code, message=str(err))
        return _finish(rt, key)

    # --- the account breaker: after an account-level refusal, the cluster holds its calls -------
    halt = rt.store.account_halt(s.access_key_id)
    if halt is not None:
        until_ms, code, reason = halt
        due = until_ms + random.randint(0, 500)
        if due >= rec.deadline:
            _dead_letter(rt, key, code=code, message=f"held until the deadline: {reason}")
            return _finish(rt, key)
        rt.store.schedule(
            key,
            due_ms=due,
            status=rec.status or PENDING,
            code=code,
            message=f"held: {reason}",
            keep_inflight=True,
        )
        return Outcome(key, rec.status, code, rec.attempts)

    # --- the cluster-wide rate limit -----------------------------------------------------------
    reservation = rt.limiter.acquire_on_time(limits, max_wait_s=s.inline_wait_max_s)
    if not reservation.granted:
        due = now + int(reservation.wait_s * 1000) + random.randint(0, 20)
        rt.store.schedule(
            key,
            due_ms=due,
            status=rec.status or PENDING,
            code=rec.code,
            message=rec.message,
            request_id=rec.request_id,
            http_status=rec.http_status,
            keep_inflight=True,
        )
        return Outcome(key, rec.status, rec.code, rec.attempts)
    LIMITER_WAIT.observe(reservation.wait_s)  # already slept by acquire_on_time

    signed = replay or rt.client.sign_bind_axb(request)
    attempt = rt.store.begin_attempt(key, signed.to_json_dict())
    if attempt < 0:
        if attempt == -2:  # an unbind came first, and nothing of this bind can have bound
            BINDS.labels("cancelled", errors.CANCELLED).inc()
        return _finish(rt, key)
    started = time.monotonic()
    try:
        response = rt.client.bind_axb_signed(signed)
    except VendorError as err:
        latency_ms = (time.monotonic() - started) * 1000
        VENDOR_LATENCY.labels("BindAxb", err.handling.value).observe(latency_ms / 1000)
        return _on_error(rt, rec, err, attempt=attempt, replay=replay is not None, latency_ms=latency_ms)
    latency_ms = (time.monotonic() - started) * 1000
    VENDOR_LATENCY.labels("BindAxb", "ok").observe(latency_ms / 1000)
    dto = response.secret_bind_dto
    assert dto is not None  # bind_axb_signed guarantees it
    expire_at_s = rec.expires_at // 1000 + s.result_ttl_extra_s
    rt.store.succeed(
        key,
        dto.model_dump(by_alias=True),
        response.request_id,
        expire_at_s,
        _hist(attempt, "OK", response.request_id, latency_ms, replay is not None),
    )
    BINDS.labels("succeeded", "OK").inc()
    done = rt.store.get(key)
    if done is not None:
        _log_outcome(done, latency_ms)
    return Outcome(key, "succeeded", "OK", attempt)


class RetryPlan(NamedTuple):
    throttled: bool
    delay_s: float
    due_ms: int
    exhausted: bool


def plan_retry(
    rt: Runtime, rec: BindRecord, err: VendorError, attempt: int, *, no_number_backoff: bool
) -> RetryPlan:
    """After a retryable answer: slow the cluster if it was a throttle, and work out when to try
    again and whether the attempts are used up. Throttled answers do not count towards
    ``AXB_MAX_ATTEMPTS`` (up to ``MAX_THROTTLES``)."""
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
    counted = attempt - (rec.throttles + (1 if throttled else 0))
    exhausted = counted >= s.max_attempts or (throttled and rec.throttles + 1 >= MAX_THROTTLES)
    return RetryPlan(throttled, delay_s, now_ms() + int(delay_s * 1000), exhausted)


def _on_error(
    rt: Runtime, rec: BindRecord, err: VendorError, *, attempt: int, replay: bool, latency_ms: float
) -> Outcome:
    s = rt.settings
    key = rec.key
    hist = _hist(attempt, err.code, err.request_id, latency_ms, replay, err.http_status)
    handling = err.handling
    common: dict[str, Any] = {"request_id": err.request_id, "http_status": err.http_status, "hist": hist}

    if err.code == "SignatureNonceUsed":
        what = "a re-sent copy of" if replay else "the first copy of"
        _dead_letter(
            rt,
            key,
            code=errors.AMBIGUOUS_OUTCOME,
            message=f"the vendor had already seen {what} this signed request (SignatureNonceUsed):"
            " the binding may exist; reconcile before replaying",
            **common,
        )
        return _finish(rt, key, latency_ms)

    if handling is Handling.ACCOUNT:
        # The vendor refuses the account itself: every other call would fail the same way.
        # Hold the whole cluster's calls for a while instead of storming; one probe per pause.
        rt.store.halt_account(s.access_key_id, err.code, err.vendor_message or str(err), s.account_halt_s)
    if handling in (Handling.TERMINAL, Handling.ACCOUNT):
        _dead_letter(rt, key, code=err.code, message=err.vendor_message or str(err), **common)
        return _finish(rt, key, latency_ms)

    if handling is Handling.CLOCK and rec.code == err.code:
        _dead_letter(
            rt,
            key,
            code=err.code,
            message="the vendor rejected our timestamp twice: check this host's clock",
            **common,
        )
        return _finish(rt, key, latency_ms)

    ambiguous = isinstance(err, AmbiguousVendorError)
    # Keep the stored signed request while its fate is unknown: the lost first copy (this
    # was a replay that did not get through) or this very attempt (sent, no answer).
    keep_inflight = ambiguous or (replay and not err.sent)

    throttled, delay_s, due, exhausted = plan_retry(rt, rec, err, attempt, no_number_backoff=True)
    too_late = due >= rec.deadline
    if exhausted or too_late:
        why = "retries exhausted" if exhausted else "no time left before the deadline"
        code = errors.AMBIGUOUS_OUTCOME if keep_inflight else err.code
        _dead_letter(rt, key, code=code, message=f"{why}; last: {err.code}: {err.vendor_message}", **common)
        return _finish(rt, key, latency_ms)

    RETRIES.labels(err.code).inc()
    rt.store.schedule(
        key,
        due_ms=due,
        status=RETRYING,
        code=err.code,
        message=err.vendor_message,
        keep_inflight=keep_inflight,
        throttled=throttled,
        **common,
    )
    log.info(
        "bind key=%s status=retrying code=%s attempts=%d retry_in_s=%.2f request_id=%s",
        key,
        err.code,
        attempt,
        delay_s,
        err.request_id or "-",
    )
    return Outcome(key, RETRYING, err.code, attempt)


def _hist(
    attempt: int, code: str, request_id: str, latency_ms: float, replay: bool, http_status: int | None = None
) -> dict[str, Any]:
    return {
        "attempt": attempt,
        "at": now_ms(),
        "code": code,
        "request_id": request_id,
        "latency_ms": round(latency_ms, 1),
        "replay": replay,
        "http_status": http_status,
    }
