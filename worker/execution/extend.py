"""Deciding an extend: wait for the bind, then ``UpdateSubscription`` (``updateExpire``).

The bind record's ``expires_at`` and its TTL (and its history's) follow, in the script that
marks the operation succeeded. Extending a binding that is not live (unbound, cancelled,
dead-lettered, expired, or with an unbind pending) dead-letters as ``axb.NOT_BOUND``. Only the
latest extend asked for is applied: an older one still queued ends ``succeeded`` as
``superseded`` without a call.
"""

from __future__ import annotations

from worker import errors
from worker.errors import InvalidRequestError
from worker.execution.plans import Call, Done, Fail, Plan, Wait, binding_of
from worker.runtime import Runtime
from worker.store import CANCELLED, DEAD_LETTERED, SUCCEEDED, BindRecord, now_ms
from worker.vendor import UpdateSubscriptionRequest, format_expiration, parse_expiration, parse_request


def plan_extend(rt: Runtime, rec: BindRecord, target: str) -> Plan:
    """What extend record ``rec`` does now about bind ``target``."""
    now = now_ms()
    try:
        moment = parse_expiration(rec.request.get("Expiration"), check_future=False)
    except InvalidRequestError as err:
        return Fail(err.code, str(err))
    expiration = format_expiration(moment)
    expires_ms = int(moment.timestamp() * 1000)
    t = rt.store.get(target) if target else None
    if t is None:
        return Fail(errors.NOT_BOUND, "no bind record for this key (never made, or its result expired)")
    if rec.seq and t.extend_seq > rec.seq:
        return Done("superseded", "a later extend of this binding was asked for; it wins")
    if t.status == CANCELLED:
        return Fail(errors.NOT_BOUND, "the bind was cancelled by an unbind: nothing to extend")
    if t.status == DEAD_LETTERED:
        return Fail(errors.NOT_BOUND, f"the bind was dead-lettered ({t.code}): nothing to extend")
    if t.status == SUCCEEDED:
        if t.unbound_at_ms:
            return Fail(errors.NOT_BOUND, "the binding was unbound: nothing to extend")
        if t.cancel_requested:
            return Fail(errors.NOT_BOUND, f"an unbind ({t.cancel_requested}) was asked for: not extending")
        if t.expires_at_ms and t.expires_at_ms <= now:
            return Fail(errors.NOT_BOUND, "the binding has expired: nothing to extend")
        binding = binding_of(t)
        try:
            update = parse_request(
                UpdateSubscriptionRequest,
                {
                    "PoolKey": t.pool,
                    "SubsId": binding["SubsId"],
                    "PhoneNoX": binding["SecretNo"],
                    "OperateType": "updateExpire",
                    "Expiration": expiration,
                },
                check_future=False,
            )
        except InvalidRequestError as err:
            return Fail(err.code, str(err))
        return Call(
            "UpdateSubscription",
            t.pool,
            lambda: rt.client.update_subscription(update),
            {**binding, "Expiration": expiration, "Outcome": "extended"},
            effect="extended",
            expires_ms=expires_ms,
            expiration=expiration,
        )
    if t.cancel_requested:
        return Fail(errors.NOT_BOUND, f"an unbind ({t.cancel_requested}) was asked for: not extending")
    return Wait(f"bind {t.key!r} is {t.status}; extending once it is bound")
