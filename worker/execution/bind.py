"""One bind attempt, as a story: deadline → request checked → hold → rate limit → call → store.

Why a bind is never silently made twice:

- one record per idempotency key, and a lease so that one delivery at a time works on it;
- before a call goes out, the signed request is written to the record (``inflight``);
- if the answer is lost (read timeout, reset, a crash of this worker), the next attempt does
  not sign a new request: it re-sends the stored one, byte for byte, same nonce. The vendor
  answers ``SignatureNonceUsed`` exactly when the first copy reached it: then the bind is
  dead-lettered as ``axb.AMBIGUOUS_OUTCOME`` for on-call to reconcile, never retried blindly,
  or (``AXB_ON_AMBIGUOUS=rebind``) signed afresh and sent again, the first copy recorded as a
  possible orphan (:mod:`.ambiguous`). Any other answer settles the question (the first copy
  never arrived).
"""

from __future__ import annotations

import random
import time

from worker import errors
from worker.errors import InvalidRequestError
from worker.execution.ambiguous import too_late_to_prove
from worker.execution.calling import requeue_for_slot, timed_call
from worker.execution.failure import dead_letter_at_deadline, on_vendor_error
from worker.execution.hold import Hold
from worker.execution.hold_gate import note_answer, pass_hold, wait_out_hold
from worker.execution.outcome import Outcome, attempt_entry, dead_letter, finish
from worker.execution.settle import Success, Unsettled
from worker.limiter import late_allowance
from worker.metrics import BINDS, LIMITER_WAIT
from worker.runtime import Runtime
from worker.store import Begin, BindRecord, now_ms
from worker.vendor import SignedRequest, api_params, bind_params, parse_bind_request


def rebind_of(rec: BindRecord, replay: SignedRequest | None) -> bool:
    """Whether this attempt is a rebind: signed afresh after a first copy became a possible orphan."""
    return rec.possible_orphan and replay is None


def attempt_bind(
    rt: Runtime,
    rec: BindRecord,
    *,
    hold: Hold | None = None,
    lease_token: str = "",
    later: Unsettled | None = None,
) -> Outcome:
    """One attempt of bind record ``rec`` (under the delivery's lease ``lease_token``; ``hold``
    is the hold in force as the delivery's start read it). ``later``: the batch's unwritten
    success, written on this attempt's round trip, and where this attempt's success waits in
    turn (:mod:`worker.execution.settle`)."""
    s = rt.settings
    key = rec.key
    now = now_ms()
    limits = rt.limits(rec.pool)

    replay: SignedRequest | None = None
    if rec.inflight:
        replay = SignedRequest.from_json_dict(rec.inflight)
        if time.time() - replay.signed_at > s.replay_window_s or now >= rec.deadline_ms:
            settled = too_late_to_prove(rt, rec, replay)
            if settled is not None:
                return settled
            replay = None  # bound again (AXB_ON_AMBIGUOUS=rebind): signed afresh below
    elif now >= rec.deadline_ms:
        return dead_letter_at_deadline(rt, rec, "bind succeeded", request_id=rec.request_id)

    # The stored request is checked again (it was at enqueue; the rules may have changed since):
    # the fast path accepts what pydantic accepts, and leaves anything doubtful to pydantic.
    fast = bind_params(rec.request, check_future=False)
    if fast is not None:
        params = api_params(fast[0])
    else:
        try:
            params = parse_bind_request(rec.request, check_future=False).to_api_params()
        except InvalidRequestError as err:
            dead_letter(rt, key, code=err.code, message=str(err))
            return finish(rt, key)

    # --- the hold: the account refused, or the vendor is down (worker/execution/hold.py) ------
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
    carried = later.queue(pipe) if later is not None else 0  # the previous key's success first
    rt.limiter.reserve_into(pipe, limits, max_wait_s=s.inline_wait_max_s)
    rt.store.begin_attempt(
        key, signed.to_json_dict(), account=s.access_key_id, probe_token=probe, client=pipe
    )
    waiting = rt.store.wait.queue(pipe)  # the stored request on the replicas before it is sent
    replies = pipe.execute()
    if later is not None:
        later.settled(replies[:carried])
    raw_slot, raw_attempt, *acked = replies[carried:]
    if waiting:
        rt.store.wait.check(acked[0])
    attempt = int(raw_attempt)
    if attempt == Begin.HELD:
        return wait_out_hold(rt, rec, rt.holds.current(s.access_key_id))
    if attempt < 0:
        if attempt == Begin.CANCELLED:  # an unbind came first, and nothing of this bind can have bound
            BINDS.labels("cancelled", errors.CANCELLED).inc()
        return finish(rt, key)
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
        # The attempt is not counted; the stored request (if any) is kept for its proof.
        rt.store.unbegin(key, attempt, first=replay is None)
        due_ms = requeue_for_slot(
            rt,
            rec,
            reservation.wait_s,
            request_id=rec.request_id,
            http_status=rec.http_status,
            keep_inflight=True,
        )
        tightest = min(limits, key=lambda limit: limit.rate_qps)
        return Outcome(
            key, rec.status, rec.code, rec.attempts, no_slot=(due_ms, tightest.rate_qps, tightest.scope)
        )
    LIMITER_WAIT.observe(waited)

    response, failed, latency_ms = timed_call("BindAxb", lambda: rt.client.bind_axb_signed(signed))
    if failed is not None:
        return on_vendor_error(
            rt,
            rec,
            failed,
            attempt=attempt,
            latency_ms=latency_ms,
            probe=probe,
            replay=replay is not None,
            bind=True,
            rebind=rebind_of(rec, replay),
        )
    assert response is not None
    note_answer(rt, None, probe)
    dto = response.secret_bind_dto
    assert dto is not None  # bind_axb_signed guarantees it
    success = Success(
        rec,
        dto.model_dump(by_alias=True),
        response.request_id,
        rec.expires_at_ms // 1000 + s.result_ttl_extra_s,
        attempt_entry(
            attempt, "OK", response.request_id, latency_ms, replay is not None, rebind=rebind_of(rec, replay)
        ),
        lease_token,
        attempt,
        latency_ms,
    )
    # In a batch, written on the next key's round trip (worker/execution/settle.py).
    return later.defer(success) if later is not None else Unsettled(rt).write(success)
