"""The hold at a delivery: may it call the vendor, what its answer does to the hold, and waiting
a hold out on the delay queue. The hold's state in Redis is :mod:`worker.execution.hold`."""

from __future__ import annotations

import logging
import random
from typing import Any

from worker import errors
from worker.errors import VendorError, outage_reason
from worker.execution.hold import ACCOUNT, Hold
from worker.execution.outcome import Outcome, dead_letter, finish
from worker.runtime import Runtime
from worker.store import PENDING, RETRYING, BindRecord, now_ms

log = logging.getLogger("axb.bind")


def pass_hold(rt: Runtime, rec: BindRecord, hold: Hold | None, token: str) -> tuple[Outcome | None, str]:
    """May this delivery call the vendor, given the hold its start read? ``(outcome, "")`` when
    the key waits instead (:func:`wait_out_hold`); ``(None, probe_token)`` when it may call,
    with a token when it is the vendor hold's one probe (see :mod:`worker.execution.hold`)."""
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
        if rec.deadline_ms:
            due = min(due, rec.deadline_ms)
    else:
        due = (hold.until_ms if hold else now_ms()) + random.randint(0, 500)
        if hold and rec.deadline_ms and due >= rec.deadline_ms:
            dead_letter(
                rt,
                key,
                code=hold.code or errors.DEADLINE_EXCEEDED,
                message=f"held until the deadline: {hold.describe()}",
                **(common or {}),
            )
            return finish(rt, key)
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
