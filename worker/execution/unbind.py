"""Deciding an unbind: the bind's record says whether to call ``UnbindSubscription``, succeed
without a call, wait for the bind, or fail.

- ``succeeded`` → ``UnbindSubscription`` with its SubsId/SecretNo (``isv.SUBS_NOT_EXIST`` =
  already gone = success);
- ``cancelled``, or ``dead_lettered`` with a definite code → nothing was bound: success without
  a call; ``axb.AMBIGUOUS_OUTCOME`` → dead letter (a binding may exist: reconcile);
- still ``pending`` or ``retrying`` → cancel it if none of its requests may have bound (one Lua
  script, :meth:`~worker.store.BindStore.try_cancel`), else wait (the delay queue, never a
  sleep) until it finishes, then unbind what it made.
"""

from __future__ import annotations

import logging

from worker import errors
from worker.execution.plans import Call, Done, Fail, Plan, Wait, binding_of
from worker.metrics import BINDS
from worker.runtime import Runtime
from worker.store import CANCELLED, DEAD_LETTERED, SUCCEEDED, BindRecord, Cancel, now_ms

log = logging.getLogger("axb.lifecycle")


def plan_unbind(rt: Runtime, rec: BindRecord, target: str) -> Plan:
    """What unbind record ``rec`` does now about bind ``target``."""
    req = rec.request
    now = now_ms()
    explicit = {k: str(req[k]) for k in ("PoolKey", "SubsId", "SecretNo") if req.get(k)}
    t = rt.store.get(target) if target else None
    if t is None:
        if len(explicit) == 3:
            return Call(
                "UnbindSubscription",
                explicit["PoolKey"],
                lambda: rt.client.unbind_subscription(
                    explicit["PoolKey"], explicit["SecretNo"], explicit["SubsId"]
                ),
                {**explicit, "Outcome": "unbound"},
            )
        return Done("gone", "no bind record any more (its result expired): nothing is live")
    if t.status == CANCELLED:
        return Done("cancelled", "the bind was cancelled before any request could bind")
    if t.status == DEAD_LETTERED:
        if t.code == errors.AMBIGUOUS_OUTCOME:
            return Fail(
                errors.AMBIGUOUS_OUTCOME,
                f"bind {t.key!r} ended {errors.AMBIGUOUS_OUTCOME}: a binding may exist that we cannot"
                " name; reconcile (axb dlq show), then unbind it by SubsId",
            )
        return Done("never_bound", f"the bind was dead-lettered ({t.code}): nothing was bound")
    if t.status == SUCCEEDED:
        if t.unbound_at_ms:
            return Done("already_unbound", f"already unbound by {t.unbind_key or 'an earlier unbind'}")
        binding = binding_of(t)
        if t.expires_at_ms and t.expires_at_ms <= now:
            return Done("expired", "the binding has expired: its X number is free already", binding)
        return Call(
            "UnbindSubscription",
            t.pool,
            lambda: rt.client.unbind_subscription(t.pool, binding["SecretNo"], binding["SubsId"]),
            {**binding, "Outcome": "unbound"},
            effect="unbound",
        )
    # The bind is still pending or retrying: cancel it if nothing of it can have bound.
    settled = rt.store.try_cancel(t.key, rec.key)
    if settled == Cancel.CANCELLED:
        _count_cancelled(t)
        return Done("cancelled", "the bind was cancelled before any request could bind")
    if settled == Cancel.IN_FLIGHT:
        if rec.deadline_ms and now >= rec.deadline_ms:
            return Done("expired", "the binding's Expiration passed before its bind finished")
        return Wait(f"bind {t.key!r} has a request in flight; unbinding once it finishes")
    return Wait(f"bind {t.key!r} just finished")  # FINISHED / MISSING: look again at once


def _count_cancelled(t: BindRecord) -> None:
    BINDS.labels("cancelled", errors.CANCELLED).inc()
    log.info("bind key=%s status=cancelled code=%s attempts=%d", t.key, errors.CANCELLED, t.attempts)
