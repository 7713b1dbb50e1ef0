"""Lifecycle operation writes (unbind, extend): their records, the cancel of a pending bind, and
an operation's success with its effect on the bind, each one script of ``lua/``.

The race between an unbind and a pending bind is settled here, atomically:

- accepting an unbind marks the bind record ``cancel_requested`` (:meth:`Operations.create_ops`);
- a bind attempt about to go out with that mark, and no request of its own whose fate is
  unknown (``inflight``), ends ``cancelled`` instead (``begin_attempt`` answers
  :attr:`~worker.store.Begin.CANCELLED`): every earlier attempt got a definite refusal, so nothing
  was bound, and nothing ever will be;
- the unbind itself cancels such a bind at once (:meth:`Operations.try_cancel`), or, when a
  request is in flight, waits for the bind to finish and then unbinds what it made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from worker import errors, keys
from worker.redis_text import as_text
from worker.sealing import check_data_key, seal
from worker.store.base import StoreBase, callback_fields, succeeded_args
from worker.store.records import now_ms


class Cancel(IntEnum):
    """What ``try_cancel.lua`` did to a bind."""

    CANCELLED = 1  # cancelled now
    FINISHED = 0  # already final
    IN_FLIGHT = 2  # a request is in flight: wait for the bind to finish
    MISSING = -1  # no record


class OpCreated(IntEnum):
    """The first item of a ``create_op.lua`` answer."""

    EXISTING = 0
    CREATED = 1
    REARMED = 2  # an extend asked for again after a later one: the latest again


@dataclass(frozen=True)
class OpCreateOutcome:
    created: bool
    fingerprint: str
    status: str
    published: bool
    rearmed: bool = False
    seq: int = 0


class Operations(StoreBase):
    """The unbind/extend side of :class:`~worker.store.BindStore`."""

    def create_ops(self, rows: Sequence[dict[str, Any]]) -> list[OpCreateOutcome]:
        """Create lifecycle operation records (the ``create_many`` fields plus ``action`` and
        ``target``) in one pipelined round trip. An unbind marks its bind ``cancel_requested``
        and an extend takes the bind's next ``extend_seq``, in the same script. An existing
        operation is left as it is and reported, except an extend asked for again after a later
        one: it becomes the latest again (``created`` is then False and ``rearmed`` True)."""
        check_data_key(self.r)
        pipe = self.r.pipeline(transaction=False)
        ts = now_ms()
        for row in rows:
            target = row.get("target") or ""
            self.scripts.run(
                "create_op",
                [
                    keys.bind_record(row["key"]),
                    self.watch_key,
                    keys.bind_record(target) if target else keys.bind_record(row["key"]),
                ],
                [
                    row["key"],
                    row["task_id"],
                    seal(row["request"]),
                    row["fingerprint"],
                    row["pool"],
                    ts,
                    row["deadline"],
                    row["expires_at"],
                    row["ttl_s"],
                    row["action"],
                    ts + self.watch_ms,
                    target,
                    *(callback_fields(row) or ["", "0"]),
                ],
                client=pipe,
            )
        out = []
        for res in pipe.execute():
            created, fp, status, published, seq = res
            out.append(
                OpCreateOutcome(
                    created=OpCreated(int(created)) is OpCreated.CREATED,
                    fingerprint=as_text(fp),
                    status=as_text(status),
                    published=as_text(published) == "1",
                    rearmed=OpCreated(int(created)) is OpCreated.REARMED,
                    seq=int(as_text(seq) or 0),
                )
            )
        return out

    def acquire_target(self, key: str, token: str, ttl_s: float) -> bool:
        """Take the lease on bind ``key``'s binding (held by one lifecycle operation at a time)."""
        return bool(self.r.set(keys.target_lease(key), token, nx=True, px=int(ttl_s * 1000)))

    def release_target(self, key: str, token: str) -> None:
        self.scripts.run("release_lease", [keys.target_lease(key)], [token])

    def try_cancel(self, key: str, by: str) -> Cancel:
        """Cancel bind ``key`` for the unbind ``by`` if no request of it may have bound."""
        ts = now_ms()
        return Cancel(
            int(
                self.scripts.run(
                    "try_cancel",
                    [keys.bind_record(key), self.delayed_key, self.watch_key, *self._finish_keys(key, ts)],
                    [by, ts, errors.CANCELLED, *self._finish_args(key, ts)],
                )
            )
        )

    def op_succeed(
        self,
        key: str,
        *,
        result: dict[str, Any],
        request_id: str,
        expire_at_s: int,
        hist: dict[str, Any] | None,
        code: str = "OK",
        message: str = "",
        target: str = "",
        effect: str = "",
        target_expires_ms: int = 0,
        target_expire_at_s: int = 0,
        expiration: str = "",
    ) -> int:
        """Mark operation ``key`` succeeded and apply its ``effect`` on bind ``target``
        (``unbound``, or ``extended`` to ``target_expires_ms`` with the record's TTL following).
        1 done; 0 the operation was final already; -1 no record."""
        tkey = target or key
        ts = now_ms()
        return int(
            self._run(
                "op_succeed",
                [
                    *self._record_keys(key),
                    keys.bind_record(tkey),
                    keys.bind_history(tkey),
                    *self._finish_keys(key, ts),
                ],
                [
                    *succeeded_args(
                        json.dumps(result, ensure_ascii=False), request_id, ts, expire_at_s, hist
                    ),
                    code,
                    message,
                    effect if target else "",
                    target_expires_ms,
                    target_expire_at_s,
                    expiration,
                    *self._finish_args(key, ts),
                ],
            )
        )
