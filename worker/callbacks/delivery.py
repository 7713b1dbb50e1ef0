"""One delivery of a completion callback: scheduled with the outcome, posted, retried, dead-lettered.

The story of one delivery (task ``axb.callback``, :func:`deliver`):

1. **Scheduled with the outcome.** The script that makes a record with a ``callback_url``
   terminal (worker/store/lua/finished.lua) also writes a delivery record ``callback:<key>@<ms>`` and puts
   it on the delay queue, due at once, and on the watchdog's list, in the same atomic step. A
   worker that dies right after the terminal write loses nothing: any worker's pump publishes
   the delivery; a message lost on the way is published again by the watchdog.
2. **Built at delivery time** from the record (:mod:`worker.callbacks.document`), masked unless
   the producer asked for numbers. The delivery record holds no phone number.
3. **Checked again** (:func:`worker.callbacks.url.resolve_target`): DNS may have changed since the
   URL was accepted. The POST goes to the address that was checked; redirects are not followed.
4. **Signed** (:mod:`worker.callbacks.signature`) and posted (:mod:`worker.callbacks.post`), with
   ``X-Axb-Key`` (the record's key) and ``X-Axb-Delivery`` (the same id on every retry of this
   delivery: receivers dedupe on it).
5. **Retried** after a connection error, a timeout or a non-2xx answer, with full-jitter backoff
   through the delay queue, until ``AXB_CALLBACK_MAX_AGE_S`` has passed; then the delivery is
   dead-lettered as ``axb.CALLBACK_FAILED`` (``axb dlq replay`` sends it again).

At least once, maybe more: a receiver that answered 2xx but whose answer was lost gets the same
delivery again. Deliveries never hold bind traffic up: at most ``AXB_CALLBACK_CONCURRENCY`` of a
worker process's slots deliver at once (the others go back on the delay queue for a moment),
each POST is bounded by ``AXB_CALLBACK_TIMEOUT_S``, and no vendor rate limit is consumed.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from typing import Any

from worker import errors, keys
from worker.callbacks.post import delivery_id, post, process_state
from worker.execution import full_jitter
from worker.metrics import CALLBACK_LAG, CALLBACK_LATENCY, CALLBACKS
from worker.observability import report_dead_letter
from worker.runtime import Runtime
from worker.store import (
    DEAD_LETTERED,
    RETRYING,
    START_GO,
    START_MISSING,
    SUCCEEDED,
    BindRecord,
    now_ms,
)

log = logging.getLogger("axb.callback")

# Deliveries that started and never finished (the process died) before the delivery is given up.
POISON_STARTS = 3
# A delivered delivery's record is kept this long (for on-call), then expires.
KEEP_DELIVERED_S = 86_400
# Marks the first attempt after ``axb dlq replay``: the age limit starts again from there.
REPLAYED = "axb.REPLAYED"
# What :func:`deliver` returns for a delivery whose record is no longer finished (replayed).
SUPERSEDED = "superseded"


def target_of(job: str) -> str:
    """The key of the record a delivery key (:func:`keys.callback_job`) reports on."""
    return job[len(keys.CALLBACK_PREFIX) :].rpartition("@")[0]


def deliver(rt: Runtime, job: str, token: str) -> str:
    """Work on delivery ``job`` once; returns what became of it (``succeeded``, ``retrying``,
    ``dead_lettered``, ``superseded`` (the record was replayed: not sent, its next outcome calls
    back), ``deferred`` (no free slot: back on the delay queue), ``busy``, ``missing``, or the
    status it already had)."""
    _client, slots = process_state(rt)
    if not slots.acquire(blocking=False):
        rt.delay.schedule(job, now_ms() + random.randint(100, 500))
        return "deferred"
    try:
        return _deliver(rt, job, token)
    finally:
        slots.release()


def _deliver(rt: Runtime, job: str, token: str) -> str:
    s = rt.settings
    lease_s = 2 * s.callback_timeout_s + 2.0
    st = rt.store.start(job, token, lease_s, "")
    rec = st.record
    if st.what == START_MISSING or rec is None:
        log.warning("callback %s: no delivery record (expired or purged); message dropped", job)
        return "missing"
    if st.what != START_GO:
        # Finished, not due yet, or another delivery holds it (the start script re-queued it).
        return rec.status if rec.terminal else "busy"
    released = False
    try:
        if st.starts > POISON_STARTS:
            _give_up(rt, rec, f"{st.starts - 1} deliveries died mid-attempt; not delivered again")
            return DEAD_LETTERED
        _fault_injection(target_of(job))
        status, released = _attempt(rt, rec, token)
        return status
    finally:
        if not released:
            rt.store.note_finish(job)
            rt.store.release_lease(job, token)


def _round_start(rt: Runtime, rec: BindRecord) -> int:
    """When this round of attempts began: the delivery's creation, or its last replay."""
    record_key = keys.bind_record(rec.key)
    if rec.code == REPLAYED:
        now = now_ms()
        rt.redis.hset(record_key, "callback_since", now)
        return now
    since = rt.redis.hget(record_key, "callback_since")
    return int(since) if since else rec.created_at_ms


def _attempt(rt: Runtime, rec: BindRecord, token: str) -> tuple[str, bool]:
    """One POST of delivery ``rec``; returns (status, whether the lease was released)."""
    s = rt.settings
    job = rec.key
    since_ms = _round_start(rt, rec)
    attempt = int(rt.store.begin_attempt(job, None))
    if attempt < 0:
        return rec.status, False
    target = rt.store.get(rec.target or target_of(job))
    url = rec.callback_url or (target.callback_url if target else "")
    show = rec.callback_numbers if rec.callback_url else bool(target and target.callback_numbers)
    if target is None or not url:
        _give_up(rt, rec, "the record expired before its callback could be delivered", attempt=attempt)
        return DEAD_LETTERED, False
    if not target.terminal:
        # Replayed (or an extend asked for again) since: its next outcome brings its own callback.
        rt.store.succeed(
            job,
            {"superseded": True},
            delivery_id(job),
            int(time.time()) + KEEP_DELIVERED_S,
            {"attempt": attempt, "at": now_ms(), "code": "axb.SUPERSEDED"},
            lease_token=token,
        )
        CALLBACKS.labels("superseded").inc()
        log.info(
            "callback %s not sent: %s is %s again (its next outcome calls back)",
            job,
            target.key,
            target.status,
        )
        return SUPERSEDED, True
    posted = post(rt, job, target, url, show_numbers=show)
    hist = {
        "attempt": attempt,
        "at": now_ms(),
        "code": posted.code,
        "http_status": posted.http_status,
        "latency_ms": round(posted.latency_s * 1000, 1),
        "request_id": delivery_id(job),
        "reason": posted.reason,
    }
    CALLBACK_LATENCY.labels("delivered" if posted.ok else "failed").observe(posted.latency_s)
    if posted.ok:
        rt.store.succeed(
            job,
            {"http_status": posted.http_status, "delivery": delivery_id(job)},
            delivery_id(job),
            int(time.time()) + KEEP_DELIVERED_S,
            hist,
            lease_token=token,
        )
        CALLBACKS.labels("delivered").inc()
        CALLBACK_LAG.observe(max(0.0, (now_ms() - rec.created_at_ms) / 1000))
        log.info(
            "callback %s delivered: http=%s attempts=%d latency_ms=%.1f",
            job,
            posted.http_status,
            attempt,
            posted.latency_s * 1000,
        )
        return SUCCEEDED, True
    delay_s = full_jitter(attempt, s.callback_backoff_initial_s, s.callback_backoff_max_s)
    age_s = (now_ms() - since_ms) / 1000
    if age_s + delay_s > s.callback_max_age_s:
        _give_up(
            rt,
            rec,
            f"undelivered after {attempt} attempt(s) over {age_s:.0f} s: {posted.reason}",
            attempt=attempt,
            http_status=posted.http_status,
            hist=hist,
        )
        return DEAD_LETTERED, False
    due_ms = now_ms() + int(delay_s * 1000)
    rt.store.schedule(
        job,
        due_ms=due_ms,
        status=RETRYING,
        code=posted.code,
        message=posted.reason,
        request_id=delivery_id(job),
        http_status=posted.http_status,
        hist=hist,
    )
    # The record outlives the last retry by a day, however long AXB_CALLBACK_MAX_AGE_S is.
    keep_s = int((since_ms / 1000 + s.callback_max_age_s) - time.time()) + KEEP_DELIVERED_S
    rt.redis.expire(keys.bind_record(job), keep_s, gt=True)
    rt.redis.expire(keys.bind_history(job), keep_s)
    CALLBACKS.labels("retrying").inc()
    log.info(
        "callback %s failed (%s); attempt %d, retry in %.2f s",
        job,
        posted.reason,
        attempt,
        delay_s,
    )
    return RETRYING, False


def _give_up(
    rt: Runtime,
    rec: BindRecord,
    message: str,
    *,
    attempt: int | None = None,
    http_status: int | None = None,
    hist: dict[str, Any] | None = None,
) -> None:
    """Dead-letter the delivery as ``axb.CALLBACK_FAILED`` (replayable) and report it once."""
    entry_id = rt.store.dead_letter(
        rec.key,
        code=errors.CALLBACK_FAILED,
        message=message,
        request_id=delivery_id(rec.key),
        http_status=http_status,
        hist=hist,
    )
    if entry_id is None:
        return
    CALLBACKS.labels("dead_lettered").inc()
    log.warning("callback %s dead-lettered (%s): %s", rec.key, errors.CALLBACK_FAILED, message)
    report_dead_letter(
        key=rec.key,
        code=errors.CALLBACK_FAILED,
        message=message,
        pool=rec.pool,
        attempts=attempt if attempt is not None else rec.attempts,
        request_id=delivery_id(rec.key),
        dlq_id=entry_id,
    )


def _fault_injection(target: str) -> None:
    """For the crash tests only: ``AXB_FAULT_KILL_ON_CALLBACK=<key>`` makes this process die
    (SIGKILL) when it is about to POST that record's callback. Off unless set."""
    victim = os.environ.get("AXB_FAULT_KILL_ON_CALLBACK")
    if victim and victim == target:
        os.kill(os.getpid(), signal.SIGKILL)
