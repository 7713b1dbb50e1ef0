"""An ambiguous bind: a copy of its signed request may have bound at the vendor, and the answer
was lost. ``AXB_ON_AMBIGUOUS`` decides what follows (README "Ambiguous outcomes: a policy"):

- ``dead_letter`` (the default): ``axb.AMBIGUOUS_OUTCOME``, for on-call to reconcile;
- ``rebind``: the bind is signed afresh (new nonce, new timestamp) and sent again as a normal
  attempt. After the proof (the byte-identical re-send answered ``SignatureNonceUsed``) it goes
  to the delay queue, due at once; when it is too late to re-send for proof (the replay window
  has passed) the same attempt signs afresh. Only the bind's deadline stops it: past it, or with
  the retries used up while the first copy's fate was unknown, it is dead-lettered as above.

Either way the first copy (its RequestId if any answer carried one, when it was sent, the pool)
goes into the possible-orphans ledger (:mod:`worker.orphans`) until the bind's Expiration, and
the record is marked ``possible_orphan``. The ledger knows an entry by key and nonce, so a crash
between recording and what follows records nothing twice.
"""

from __future__ import annotations

import logging
from typing import Any

from worker import errors
from worker.execution.outcome import Outcome, dead_letter, finish
from worker.orphans import record_possible_orphan
from worker.runtime import Runtime
from worker.store import RETRYING, BindRecord, now_ms
from worker.vendor import SignedRequest

log = logging.getLogger("axb.bind")

REBIND = "rebind"


def rebinding(rt: Runtime, rec: BindRecord) -> bool:
    """Whether ``rec`` is bound again now: the policy is ``rebind`` and its deadline is ahead."""
    return rt.settings.on_ambiguous == REBIND and (not rec.deadline_ms or now_ms() < rec.deadline_ms)


def record_first_copy(
    rt: Runtime,
    rec: BindRecord,
    *,
    note: str,
    first: SignedRequest | None = None,
    hist: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Put the first copy of ``rec`` (``first``, else the signed request its record keeps) into
    the possible-orphans ledger; ``hist``: this attempt's history entry, not yet stored. Returns
    what a dead letter keeps of it (its ``extra``), so that a rebind from the console records
    the same entry."""
    if first is None:
        fresh = rt.store.get(rec.key)
        stored = (fresh.inflight if fresh else None) or rec.inflight
        first = SignedRequest.from_json_dict(stored) if stored else None
    nonce = first.nonce if first else ""
    sent_at_ms = int(first.signed_at * 1000) if first else (rec.last_attempt_at_ms or now_ms())
    request_id = ""
    if first is not None:
        # The first copy's own history entry (if its attempt ended before a crash): the one that
        # was not a re-send and went out after the copy was signed.
        for h in [*rt.store.history(rec.key), *([hist] if hist else [])]:
            if not h.get("replay") and int(h.get("sent_at") or 0) >= sent_at_ms - 1:
                request_id, sent_at_ms = str(h.get("request_id") or ""), int(h["sent_at"])
    record_possible_orphan(
        rt.redis,
        key=rec.key,
        request_id=request_id,
        pool=rec.pool,
        sent_at_ms=sent_at_ms,
        expires_at_ms=rec.expires_at_ms,
        note=note,
        nonce=nonce,
    )
    rec.possible_orphan = True
    return {"first_copy": {"nonce": nonce, "request_id": request_id, "sent_at": sent_at_ms}}


def ambiguous_dead_letter(
    rt: Runtime,
    rec: BindRecord,
    *,
    message: str,
    first: SignedRequest | None = None,
    latency_ms: float | None = None,
    **common: Any,
) -> Outcome:
    """Dead-letter ``rec`` as ``axb.AMBIGUOUS_OUTCOME``, its first copy in the ledger first.
    ``common``: the dead letter's ``request_id``, ``http_status``, ``hist``."""
    extra = record_first_copy(
        rt, rec, note="dead-lettered as axb.AMBIGUOUS_OUTCOME", first=first, hist=common.get("hist")
    )
    dead_letter(rt, rec.key, code=errors.AMBIGUOUS_OUTCOME, message=message, extra=extra, **common)
    return finish(rt, rec.key, latency_ms)


def on_nonce_used(
    rt: Runtime, rec: BindRecord, *, attempt: int, replay: bool, latency_ms: float, common: dict[str, Any]
) -> Outcome:
    """A bind's re-sent (or first) copy was answered ``SignatureNonceUsed``: the vendor saw the
    first copy. Dead-lettered, or (``rebind``) back on the delay queue, due now, to sign afresh."""
    what = "a re-sent copy of" if replay else "the first copy of"
    seen = f"the vendor had already seen {what} this signed request (SignatureNonceUsed)"
    if not rebinding(rt, rec):
        return ambiguous_dead_letter(
            rt, rec, message=f"{seen}: the binding may exist; reconcile before replaying", **common
        )
    record_first_copy(rt, rec, note="bound again (AXB_ON_AMBIGUOUS=rebind)", hist=common.get("hist"))
    hist = {**common["hist"], "then": REBIND} if common.get("hist") else None
    message = f"{seen}: bound again with a fresh signature; the first copy is a possible orphan"
    rt.store.schedule(
        rec.key,
        due_ms=now_ms(),
        status=RETRYING,
        code="SignatureNonceUsed",
        message=message,
        request_id=common.get("request_id") or "",
        http_status=common.get("http_status"),
        hist=hist,
        durable=True,
    )
    log.info(
        "bind key=%s status=retrying code=SignatureNonceUsed attempts=%d then=rebind latency_ms=%.1f",
        rec.key,
        attempt,
        latency_ms,
    )
    return Outcome(rec.key, RETRYING, "SignatureNonceUsed", attempt)


def too_late_to_prove(rt: Runtime, rec: BindRecord, first: SignedRequest) -> Outcome | None:
    """The stored copy ``first`` can no longer be re-sent for proof (the replay window or the
    deadline has passed): dead-lettered, or None when the caller binds again now (``rebind``,
    deadline ahead): the first copy may or may not have bound, so it goes into the ledger."""
    if rebinding(rt, rec):
        record_first_copy(
            rt, rec, note="too late to prove; bound again (AXB_ON_AMBIGUOUS=rebind)", first=first
        )
        return None
    return ambiguous_dead_letter(
        rt,
        rec,
        message=f"attempt {rec.attempts} was sent and never answered ({rec.code or 'no answer'});"
        " too late to re-send it for proof: the binding may exist, reconcile before replaying",
        first=first,
        request_id=rec.request_id,
    )
