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
from dataclasses import dataclass
from typing import Any, NamedTuple

from worker import errors, keys
from worker.errors import AmbiguousVendorError, Handling, InvalidRequestError, VendorError, outage_reason
from worker.hold import ACCOUNT, Hold
from worker.limiter import late_allowance
from worker.metrics import BINDS, LIFECYCLE, LIMITER_WAIT, RETRIES, VENDOR_LATENCY
from worker.observability import key_scope, report_dead_letter
from worker.queue import STOPPING
from worker.runtime import Runtime
from worker.store import (
    PENDING,
    RETRYING,
    START_BUSY,
    START_DELAYED,
    START_GO,
    START_MISSING,
    START_TERMINAL,
    BindRecord,
    Start,
    now_ms,
)
from worker.vendor import SignedRequest, api_params, bind_params, parse_bind_request

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
    # The delivery's lease and start count were already settled (in the succeed script).
    released: bool = False
    # No rate-limit slot within the inline wait: (when the key is due again in ms, the rate and
    # scope of its tightest limit).
    no_slot: tuple[int, float, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status, "code": self.code, "attempts": self.attempts}


def full_jitter(attempt: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, initial * 2**(attempt-1))]."""
    ceiling = min(max_s, initial_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0, ceiling)


def run_bind(
    rt: Runtime, key: str, delivery: str, *, in_batch: bool = False, started: Start | None = None
) -> Outcome:
    """Work on record ``key``: a bind, or (by its record's action) an unbind or extend.

    ``in_batch``: this delivery is one key of a many-key message (``axb.bind_many``). A key
    whose earlier delivery died mid-attempt is then taken out of the batch and sent on as a
    message of its own, so that a poison key is counted (and dead-lettered) alone and never
    takes the innocent keys of its batch with it. ``started``: the key's start, already made
    for the whole batch (:meth:`BindStore.start_many`).
    """
    st = started or rt.store.start(key, delivery, lease_seconds(rt), rt.settings.access_key_id)
    rec = st.record
    if st.what == START_MISSING or rec is None:
        log.warning("bind key=%s: no record (purged or expired); message dropped", key)
        return Outcome(key, "missing")
    if st.what in (START_TERMINAL, START_DELAYED):
        # Finished, or a stale copy of the message: the delay queue owns the key until it is due.
        return Outcome(key, rec.status, rec.code, rec.attempts)
    if st.what == START_BUSY:
        # Another delivery is working on it (or died holding the lease): the start script put
        # the key on the delay queue for when the lease runs out. Never dropped on the floor.
        return Outcome(key, "busy", rec.code, rec.attempts)
    if in_batch and st.starts > 1:
        rt.store.unstart(key, delivery)
        rt.publish([key])
        log.warning("bind key=%s: an earlier delivery died mid-attempt; sent on alone", key)
        return Outcome(key, "split", rec.code, rec.attempts)
    released = False
    try:
        if st.starts > POISON_STARTS:
            _dead_letter(
                rt,
                key,
                code=errors.POISON_MESSAGE,
                message=f"{st.starts - 1} deliveries died mid-attempt; not delivered again",
            )
            return _finish(rt, key)
        _fault_injection(key)
        if rec.action != "bind":
            from worker.lifecycle import attempt_op

            outcome = attempt_op(rt, rec, st.hold, delivery)
        else:
            outcome = _attempt(rt, rec, hold=st.hold, lease_token=delivery)
        released = outcome.released
        if not released:
            rt.store.note_finish(key)
        return outcome
    finally:
        if not released:
            rt.store.release_lease(key, delivery)


def run_bind_many(rt: Runtime, key_list: list[str], delivery: str) -> list[Outcome]:
    """Work on many bind keys carried by one message, one after the other, each exactly as
    :func:`run_bind` would (its own lease, record, retries, result and dead letter).

    The message is held for at most ``batch_budget_s``: keys not started by then are published
    again as a new message, so a slow vendor never keeps a message past the visibility timeout.
    """
    budget_s = rt.settings.batch_budget_s
    t0 = time.monotonic()
    # Every key is started (record read, lease taken, start counted) in one round trip. The
    # leases outlast the budget plus one key's longest attempt (AXB_HARD_TIME_LIMIT_S + 5 s).
    tokens = [f"{delivery}:{i}" for i in range(len(key_list))]
    starts = rt.store.start_many(
        list(zip(key_list, tokens, strict=True)), lease_seconds(rt), rt.settings.access_key_id
    )
    out: list[Outcome] = []
    for i, key in enumerate(key_list):
        if i and out[-1].no_slot is not None:
            # The rate limit has no slot for a while: the other keys would only be refused one by
            # one (each a start, a signature and a refusal). They join the scope's line of parked
            # keys on the delay queue, spaced at its rate, after the refused key.
            due, rate, scope = out[-1].no_slot
            step_ms = 1000.0 / rate
            rest = [
                (k, t)
                for k, t, st in zip(key_list[i:], tokens[i:], starts[i:], strict=True)
                if st.what == START_GO
            ]
            rt.store.park(rest, scope=scope, earliest_ms=due + int(step_ms), step_ms=step_ms)
            out.extend(Outcome(k, "parked") for k in key_list[i:])
            break
        if i and (time.monotonic() - t0 > budget_s or STOPPING.is_set()):
            # Keys started and not worked on are given back and published again; the others
            # were settled by the start itself (finished, delayed, busy: on the delay queue).
            rest = [
                (k, t)
                for k, t, st in zip(key_list[i:], tokens[i:], starts[i:], strict=True)
                if st.what == START_GO
            ]
            rt.store.unstart_many(rest)
            rt.publish([k for k, _ in rest], batch=True)
            why = "the worker is shutting down" if STOPPING.is_set() else f"{budget_s:.1f} s"
            log.info("bind batch: %d key(s) left after %s; published again", len(rest), why)
            out.extend(Outcome(k, "requeued") for k in key_list[i:])
            break
        with key_scope(key):  # each key its own Sentry scope: events carry only its breadcrumbs
            out.append(run_bind(rt, key, tokens[i], in_batch=True, started=starts[i]))
    return out


def lease_seconds(rt: Runtime) -> float:
    return rt.settings.hard_time_limit_s + LEASE_EXTRA_S


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


def _attempt(rt: Runtime, rec: BindRecord, *, hold: Hold | None = None, lease_token: str = "") -> Outcome:
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

    # The stored request is checked again (it was at enqueue; the rules may have changed since):
    # the fast path accepts what pydantic accepts, and leaves anything doubtful to pydantic.
    fast = bind_params(rec.request, check_future=False)
    if fast is not None:
        params = api_params(fast[0])
    else:
        try:
            params = parse_bind_request(rec.request, check_future=False).to_api_params()
        except InvalidRequestError as err:
            _dead_letter(rt, key, code=err.code, message=str(err))
            return _finish(rt, key)

    # --- the hold: the account refused, or the vendor is down (worker/hold.py) -----------------
    held, probe = pass_hold(rt, rec, hold, lease_token or f"probe:{key}:{random.getrandbits(32)}")
    if held is not None:
        return held

    # --- the cluster-wide rate limit, and the call recorded as going out -----------------------
    # Signed first, then the limiter's slot and the record of the call (the stored signed
    # request, the attempt counted, the account's hold checked) in one round trip: nothing but
    # the slot's own wait lies between the slot and the send. The signature's timestamp is at
    # most the inline wait old.
    signed = replay or rt.client.sign("BindAxb", params)
    asked = time.monotonic()  # the slot is no earlier than this plus its wait
    pipe = rt.redis.pipeline(transaction=False)
    rt.limiter.reserve_into(pipe, limits, max_wait_s=s.inline_wait_max_s)
    rt.store.begin_attempt(
        key, signed.to_json_dict(), account=s.access_key_id, probe_token=probe, client=pipe
    )
    waiting = rt.store.wait.queue(pipe)  # the stored request on the replicas before it is sent
    raw_slot, raw_attempt, *acked = pipe.execute()
    if waiting:
        rt.store.wait.check(acked[0])
    attempt = int(raw_attempt)
    if attempt == -3:
        return wait_out_hold(rt, rec, rt.holds.current(s.access_key_id))
    if attempt < 0:
        if attempt == -2:  # an unbind came first, and nothing of this bind can have bound
            BINDS.labels("cancelled", errors.CANCELLED).inc()
        return _finish(rt, key)
    reservation = rt.limiter.reservation(raw_slot)
    waited = reservation.wait_s if reservation.granted else 0.0
    if reservation.granted:
        late_s, strict = late_allowance(limits)
        if reservation.wait_s > 0:
            time.sleep(reservation.wait_s)  # counted from the answer: never before the slot
        if (strict or reservation.wait_s > 0) and time.monotonic() - (asked + reservation.wait_s) > late_s:
            # Too late for the slot (woken late, or a busy thread): it is given up rather than
            # used late, and a new one is asked for (see acquire_on_time).
            rt.limiter.late_wakeups += 1
            reservation = rt.limiter.acquire_on_time(limits, max_wait_s=s.inline_wait_max_s, late_s=late_s)
            waited += reservation.wait_s
    if not reservation.granted:
        # No slot within the inline wait: this call does not go out now. The attempt is not
        # counted; the key waits on the delay queue for about when a slot frees up.
        rt.store.unbegin(key, attempt, first=replay is None)
        due = now_ms() + int(reservation.wait_s * 1000) + random.randint(0, 20)
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
        tightest = min(limits, key=lambda limit: limit.rate_qps)
        return Outcome(
            key, rec.status, rec.code, rec.attempts, no_slot=(due, tightest.rate_qps, tightest.scope)
        )
    LIMITER_WAIT.observe(waited)

    started = time.monotonic()
    try:
        response = rt.client.bind_axb_signed(signed)
    except VendorError as err:
        latency_ms = (time.monotonic() - started) * 1000
        VENDOR_LATENCY.labels("BindAxb", err.handling.value).observe(latency_ms / 1000)
        return _on_error(
            rt, rec, err, attempt=attempt, replay=replay is not None, latency_ms=latency_ms, probe=probe
        )
    latency_ms = (time.monotonic() - started) * 1000
    VENDOR_LATENCY.labels("BindAxb", "ok").observe(latency_ms / 1000)
    note_answer(rt, None, probe)
    dto = response.secret_bind_dto
    assert dto is not None  # bind_axb_signed guarantees it
    expire_at_s = rec.expires_at // 1000 + s.result_ttl_extra_s
    stored = rt.store.succeed(
        key,
        dto.model_dump(by_alias=True),
        response.request_id,
        expire_at_s,
        _hist(attempt, "OK", response.request_id, latency_ms, replay is not None),
        lease_token=lease_token,
    )
    BINDS.labels("succeeded", "OK").inc()
    if stored != 1:  # finished by someone else meanwhile (never expected while we hold the lease)
        return _finish(rt, key, latency_ms)
    rec.status, rec.code, rec.attempts, rec.request_id = "succeeded", "OK", attempt, response.request_id
    _log_outcome(rec, latency_ms)
    return Outcome(key, "succeeded", "OK", attempt, released=bool(lease_token))


def pass_hold(rt: Runtime, rec: BindRecord, hold: Hold | None, token: str) -> tuple[Outcome | None, str]:
    """May this delivery call the vendor, given the hold its start read? ``(outcome, "")`` when
    the key waits instead (:func:`wait_out_hold`); ``(None, probe_token)`` when it may call,
    with a token when it is the vendor hold's one probe (see :mod:`worker.hold`)."""
    if hold is None:
        return None, ""
    if hold.scope == ACCOUNT:
        return (wait_out_hold(rt, rec, hold), "") if hold.until_ms > now_ms() else (None, "")
    verdict = rt.holds.try_probe(token)
    if verdict == "hold":
        return wait_out_hold(rt, rec, hold), ""
    if verdict == "probe":
        log.info("%s key=%s: probing the vendor (%s)", rec.action or "bind", rec.key, hold.describe())
        return None, token
    return None, ""


def note_answer(rt: Runtime, err: VendorError | None, probe: str) -> Hold | None:
    """Count a call's outcome for the vendor hold; the hold if it is open after this failure.
    An answer to the probe closes the hold and releases every held key."""
    hold = rt.holds.after_call(err, probe=probe)
    if probe and hold is None and (err is None or not outage_reason(err)):
        log.warning("vendor hold closed: the vendor answered a probe; held keys released")
    elif hold is not None and hold.since_ms >= now_ms() - 1000 and not probe:
        log.warning("vendor hold: %s", hold.describe())
    return hold


def wait_out_hold(
    rt: Runtime,
    rec: BindRecord,
    hold: Hold | None,
    *,
    keep_inflight: bool = True,
    common: dict[str, Any] | None = None,
    outage: bool = False,
) -> Outcome:
    """The key waits on the delay queue while calls are held; it spends no attempt. An account
    hold ends at a known time (past the deadline: dead-lettered now, with the refusal's code); a
    vendor hold ends when a probe gets an answer, and the key waits in the held set until then,
    or until its own deadline, where the next start dead-letters it. ``keep_inflight``: keep a
    stored request whose fate is unknown, to be proved by re-sending it after the hold."""
    key = rec.key
    if hold is not None and hold.scope != ACCOUNT:
        due = rt.holds.park(key, rt.settings.queue)
        if rec.deadline:
            due = min(due, rec.deadline)
    else:
        due = (hold.until_ms if hold else now_ms()) + random.randint(0, 500)
        if hold and rec.deadline and due >= rec.deadline:
            _dead_letter(
                rt,
                key,
                code=hold.code or errors.DEADLINE_EXCEEDED,
                message=f"held until the deadline: {hold.describe()}",
                **(common or {}),
            )
            return _finish(rt, key)
    code = hold.code if hold else rec.code
    rt.store.schedule(
        key,
        due_ms=due,
        status=RETRYING if outage else (rec.status or PENDING),
        code=code,
        message=f"held: {hold.describe()}" if hold else rec.message,
        keep_inflight=keep_inflight,
        outage=outage,
        **(common or {}),
    )
    return Outcome(key, RETRYING if outage else rec.status, code, rec.attempts)


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
    outage = bool(rec.deadline) and bool(outage_reason(err))
    counted = attempt - rec.throttles - rec.outages - (1 if throttled or outage else 0)
    exhausted = (not outage and counted >= s.max_attempts) or (
        throttled and rec.throttles + 1 >= MAX_THROTTLES
    )
    due = now_ms() + int(delay_s * 1000)
    if outage:
        due = min(due, rec.deadline)  # the next start dead-letters it if the deadline has come
    return RetryPlan(throttled, delay_s, due, exhausted, outage)


def _on_error(
    rt: Runtime,
    rec: BindRecord,
    err: VendorError,
    *,
    attempt: int,
    replay: bool,
    latency_ms: float,
    probe: str = "",
) -> Outcome:
    s = rt.settings
    key = rec.key
    hist = _hist(attempt, err.code, err.request_id, latency_ms, replay, err.http_status)
    handling = err.handling
    common: dict[str, Any] = {"request_id": err.request_id, "http_status": err.http_status, "hist": hist}
    vendor_hold = note_answer(rt, err, probe)

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
        rt.holds.hold_account(s.access_key_id, err.code, err.vendor_message or str(err), s.account_hold_s)
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
    if vendor_hold is not None:
        # The vendor is down for the whole cluster: wait for a probe's answer, spending nothing.
        return wait_out_hold(rt, rec, vendor_hold, keep_inflight=keep_inflight, common=common, outage=True)

    return retry_or_dead_letter(
        rt, rec, err, attempt, common, latency_ms, keep_inflight=keep_inflight, no_number_backoff=True
    )


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
    throttled, delay_s, due, exhausted, outage = plan_retry(
        rt, rec, err, attempt, no_number_backoff=no_number_backoff
    )
    if exhausted or (not outage and rec.deadline and due >= rec.deadline):
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


def _hist(
    attempt: int, code: str, request_id: str, latency_ms: float, replay: bool, http_status: int | None = None
) -> dict[str, Any]:
    at = now_ms()
    return {
        "attempt": attempt,
        "at": at,
        # When the request went out (the answer came latency_ms later).
        "sent_at": at - round(latency_ms),
        "code": code,
        "request_id": request_id,
        "latency_ms": round(latency_ms, 1),
        "replay": replay,
        "http_status": http_status,
    }
