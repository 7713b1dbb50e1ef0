"""The one delivery path of every record: start → poison check → bind, unbind or extend → finish.

The Celery tasks (``tasks/bind.py``, ``tasks/unbind.py``, ``tasks/extend.py``) are thin
wrappers around :func:`deliver` and :func:`deliver_many`.
"""

from __future__ import annotations

import logging
import time

from worker import errors
from worker.execution.bind import attempt_bind
from worker.execution.lease import lease_seconds
from worker.execution.operation import attempt_operation
from worker.execution.outcome import Outcome, dead_letter, finish
from worker.execution.settle import Unsettled
from worker.observability import key_scope
from worker.runtime import Runtime
from worker.shutdown import STOPPING
from worker.store import START_BUSY, START_DELAYED, START_GO, START_MISSING, START_TERMINAL, Start
from worker.testing import kill_if_targeted

log = logging.getLogger("axb.bind")

# Deliveries that started and never finished (the process died): after this many, the
# message is poison and is dead-lettered instead of killing workers forever.
POISON_STARTS = 3


def deliver(
    rt: Runtime,
    key: str,
    delivery: str,
    *,
    in_batch: bool = False,
    started: Start | None = None,
    later: Unsettled | None = None,
) -> Outcome:
    """Work on record ``key``: a bind, an unbind or an extend, as its record's action says.

    ``in_batch``: this delivery is one key of a many-key message (``axb.bind_many``). A key
    whose earlier delivery died mid-attempt is then taken out of the batch and sent on as a
    message of its own, so that a poison key is counted (and dead-lettered) alone and never
    takes the innocent keys of its batch with it. ``started``: the key's start, already made
    for the whole batch (:meth:`BindStore.start_many`).
    """
    st = started or rt.store.start(key, delivery, lease_seconds(rt.settings), rt.settings.access_key_id)
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
            dead_letter(
                rt,
                key,
                code=errors.POISON_MESSAGE,
                message=f"{st.starts - 1} deliveries died mid-attempt; not delivered again",
            )
            return finish(rt, key)
        kill_if_targeted(key)
        if rec.action != "bind":
            if later is not None:
                later.flush()
            outcome = attempt_operation(rt, rec, st.hold, delivery)
        else:
            outcome = attempt_bind(rt, rec, hold=st.hold, lease_token=delivery, later=later)
        released = outcome.released
        if not released:
            rt.store.note_finish(key)
        return outcome
    finally:
        if not released:
            rt.store.release_lease(key, delivery)


def deliver_many(rt: Runtime, key_list: list[str], delivery: str) -> list[Outcome]:
    """Work on many keys carried by one message, one after the other, each exactly as
    :func:`deliver` would (its own lease, record, retries, result and dead letter).

    The message is held for at most ``batch_budget_s``: keys not started by then are published
    again as a new message, so a slow vendor never keeps a message past the visibility timeout.
    """
    t0 = time.monotonic()
    # Every key is started (record read, lease taken, start counted) in one round trip. The
    # leases outlast the budget plus one key's longest attempt (AXB_HARD_TIME_LIMIT_S + 5 s).
    tokens = [f"{delivery}:{i}" for i in range(len(key_list))]
    starts = rt.store.start_many(
        list(zip(key_list, tokens, strict=True)), lease_seconds(rt.settings), rt.settings.access_key_id
    )
    out: list[Outcome] = []
    # Each bind's success is written on the next bind's round trip (worker/execution/settle.py),
    # the last one before the message is acknowledged; the successes are logged in one line.
    later = Unsettled(rt, batch_log=True)
    try:
        _deliver_each(rt, key_list, tokens, starts, t0, later, out)
    finally:
        try:
            later.flush()
        finally:
            later.log_successes()
    return later.outcomes(out)


def _deliver_each(
    rt: Runtime,
    key_list: list[str],
    tokens: list[str],
    starts: list[Start],
    t0: float,
    later: Unsettled,
    out: list[Outcome],
) -> None:
    budget_s = rt.settings.batch_budget_s
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
            return
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
            return
        with key_scope(key):  # each key its own Sentry scope: events carry only its breadcrumbs
            out.append(deliver(rt, key, tokens[i], in_batch=True, started=starts[i], later=later))
        # A key that ended without a round trip of its own left the earlier success unwritten.
        later.flush_unless(key)
