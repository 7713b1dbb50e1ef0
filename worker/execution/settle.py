"""A batch's last success, written on the batch's next round trip: one per bind, not two.

In a many-key message (:func:`worker.execution.delivery.deliver_many`) the write that marks key
``i`` succeeded (result stored, lease freed, start count reset: ``succeed.lua``) is not sent on
its own. It is queued first on the pipeline that begins key ``i + 1``'s attempt (the limiter's
slot and the stored signed request, :func:`worker.execution.bind.attempt_bind`), so each bind
of a batch costs one Redis round trip instead of two. Before that call goes out, key ``i`` is
final in Redis (the pipeline's WAIT, when replicas are asked for, comes after both writes).

Whatever else happens next, the success is written first (:meth:`Unsettled.flush`): before any
other delivery path of the batch (an unbind or an extend, a key that ends without a call), and
before the batch returns (its message is acknowledged after that), or raises (the message is
put back). The one difference from writing it at once: a process killed after key ``i``'s answer
and before that round trip (the time it takes to read and sign key ``i + 1``, well under a
millisecond of CPU) leaves key ``i`` unwritten, as a kill between the answer and its own write
did before; its stored request is re-sent on the next delivery, the vendor answers
``SignatureNonceUsed``, and the key is an ambiguous outcome like any other (dead-lettered as
``axb.AMBIGUOUS_OUTCOME``, or bound again under ``AXB_ON_AMBIGUOUS=rebind``, its first binding
in the possible-orphans ledger). Never lost, never silently bound twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from worker.execution.outcome import Outcome, finish, log_outcome, log_outcomes, outcome_line
from worker.metrics import BINDS
from worker.runtime import Runtime
from worker.store import BindRecord

SUCCEEDED_OK = BINDS.labels("succeeded", "OK")  # the label lookup once, not per bind


@dataclass
class Success:
    """A vendor answer ``OK`` not yet written: what :meth:`BindStore.succeed` takes."""

    rec: BindRecord
    result: dict[str, Any]
    request_id: str
    expire_at_s: int
    hist: dict[str, Any]
    lease_token: str
    attempt: int
    latency_ms: float


class Unsettled:
    """The success of one key of a batch (at most one at a time) waiting for the next round trip,
    and the outcomes its write turned out to change (a record finished meanwhile by someone else)."""

    def __init__(self, rt: Runtime, *, batch_log: bool = False) -> None:
        self.rt = rt
        self.pending: Success | None = None
        self.changed: dict[str, Outcome] = {}
        # With ``batch_log``, the successes' outcome lines wait for :meth:`log_successes` (one
        # log record per message: a record per bind cost as much CPU as a Redis command).
        self.lines: list[str] | None = [] if batch_log else None

    def defer(self, success: Success) -> Outcome:
        """Keep ``success`` for the next round trip (writing an older one first); its outcome."""
        self.flush()
        self.pending = success
        return Outcome(success.rec.key, "succeeded", "OK", success.attempt, released=True)

    def write(self, success: Success) -> Outcome:
        """Write ``success`` now (a delivery of one key); its outcome."""
        outcome = self.defer(success)
        self.flush()
        return self.changed.get(outcome.key, outcome)

    def queue(self, pipe: Any) -> int:
        """Queue the pending write first on ``pipe``; how many replies are its (0 or 1), for
        :meth:`settled`."""
        s = self.pending
        if s is None:
            return 0
        self.rt.store.succeed(
            s.rec.key, s.result, s.request_id, s.expire_at_s, s.hist, lease_token=s.lease_token, client=pipe
        )
        return 1

    def settled(self, replies: list[Any]) -> None:
        """The replies of what :meth:`queue` put on the pipeline, once it was executed."""
        if not replies:
            return
        s = self.pending
        assert s is not None
        self.pending = None
        self._written(s, replies[0])

    def flush(self) -> None:
        """Write the pending success now, in a round trip of its own (and WAIT for replicas)."""
        s = self.pending
        if s is None:
            return
        stored = self.rt.store.succeed(
            s.rec.key, s.result, s.request_id, s.expire_at_s, s.hist, lease_token=s.lease_token
        )
        self.pending = None
        self._written(s, stored)

    def flush_unless(self, key: str) -> None:
        """:meth:`flush`, unless the pending success is ``key``'s own (the key just delivered)."""
        if self.pending is not None and self.pending.rec.key != key:
            self.flush()

    def _written(self, s: Success, reply: Any) -> None:
        if isinstance(reply, Exception):
            raise reply
        SUCCEEDED_OK.inc()
        rec = s.rec
        if int(reply) != 1:  # finished by someone else meanwhile (never expected while we hold the lease)
            # The script left the delivery as it was: it is ended here.
            self.rt.store.note_finish(rec.key)
            self.rt.store.release_lease(rec.key, s.lease_token)
            self.changed[rec.key] = replace(finish(self.rt, rec.key, s.latency_ms), released=True)
            return
        rec.status, rec.code, rec.attempts, rec.request_id = "succeeded", "OK", s.attempt, s.request_id
        if self.lines is not None:
            self.lines.append(outcome_line(rec, s.latency_ms))
        else:
            log_outcome(rec, s.latency_ms)

    def log_successes(self) -> None:
        """Log the successes kept by ``batch_log``, in one record."""
        if self.lines:
            log_outcomes(self.lines)
            self.lines.clear()

    def outcomes(self, out: list[Outcome]) -> list[Outcome]:
        """``out`` with the outcomes the writes changed."""
        return [self.changed.get(o.key, o) for o in out] if self.changed else out
