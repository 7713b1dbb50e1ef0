"""One delivery of a record: start (lease), begin an attempt, then succeed, schedule a retry or
dead-letter; each step one script of ``lua/``, with its named result."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from worker import errors, keys
from worker.execution import Hold
from worker.redis_text import as_text
from worker.sealing import seal
from worker.store.base import StoreBase, hist_json, succeeded_args
from worker.store.records import RETRYING, BindRecord, now_ms


class StartOutcome(IntEnum):
    """What ``start.lua`` found for a delivery."""

    MISSING = 0  # no record
    TERMINAL = 1  # the record is final
    DELAYED = 2  # a stale copy: the delay queue owns the key until it is due
    BUSY = 3  # another delivery holds the lease: looked at again once it has run out
    GO = 4  # the lease is taken and the start counted


START_MISSING, START_TERMINAL, START_DELAYED, START_BUSY, START_GO = StartOutcome


class Begin(IntEnum):
    """The refusals of ``begin_attempt.lua``; any positive answer is the attempt number."""

    TERMINAL = -1  # the record is final: do not call
    CANCELLED = -2  # an unbind cancelled the bind just now: do not call
    HELD = -3  # calls are on hold (the account's, or the vendor's and this is not the probe)


@dataclass(frozen=True)
class Start:
    """What :meth:`BindStore.start` found: ``what`` is a :class:`StartOutcome`."""

    what: StartOutcome
    record: BindRecord | None
    starts: int
    # The hold in force when the delivery started: the account's, else the vendor's.
    hold: Hold | None


class Delivery(StoreBase):
    """The worker side of :class:`~worker.store.BindStore`."""

    def start(self, key: str, token: str, lease_s: float, account: str) -> Start:
        """Begin a delivery of ``key`` in one round trip: read the record, check the delay queue,
        take the lease, count the start and read the hold in force (see ``start.lua``)."""
        return self.start_many([(key, token)], lease_s, account)[0]

    def start_many(self, items: Sequence[tuple[str, str]], lease_s: float, account: str) -> list[Start]:
        """:meth:`start` for many ``(key, token)`` pairs in one pipelined round trip."""
        ts = now_ms()
        pipe = self.r.pipeline(transaction=False)
        for key, token in items:
            self.scripts.run(
                "start",
                [
                    keys.bind_record(key),
                    keys.bind_lease(key),
                    self.delayed_key,
                    keys.account_hold(account),
                    keys.VENDOR_HOLD,
                ],
                [key, token, int(lease_s * 1000), ts],
                client=pipe,
            )
        return [_started(*res) for res in pipe.execute()]

    def unstart(self, key: str, token: str) -> None:
        """Undo a :meth:`start` that will not work on the key (its count and its lease)."""
        self.unstart_many([(key, token)])

    def park(self, items: Sequence[tuple[str, str]], *, scope: str, earliest_ms: int, step_ms: float) -> None:
        """Put started ``(key, token)`` items on the delay queue and undo their starts.

        They join ``scope``'s line of parked keys: one every ``step_ms`` (the scope's rate),
        from ``earliest_ms`` or the end of the line, whichever is later. Keys parked by every
        worker so come back about as fast as the limiter can take them, instead of all at once
        to be refused again. The delay queue entries are written before the starts are undone,
        so no key is ever left with neither a message, a lease nor a due time."""
        if not items:
            return
        start_ms = int(
            self.scripts.run(
                "park_line", [keys.park_line(scope)], [now_ms(), earliest_ms, step_ms, len(items)]
            )
        )
        due_ms = [start_ms + int(j * step_ms) for j in range(len(items))]
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(self.delayed_key, {k: due for (k, _), due in zip(items, due_ms, strict=True)})
        self.unstart_many(items, pipe=pipe)

    def unstart_many(self, items: Sequence[tuple[str, str]], *, pipe: Any = None) -> None:
        """:meth:`unstart` for many; with ``pipe``, after what is already queued on it."""
        if not items and pipe is None:
            return
        pipe = pipe if pipe is not None else self.r.pipeline(transaction=False)
        for key, token in items:
            pipe.hincrby(keys.bind_record(key), "starts", -1)
            self.scripts.run("release_lease", [keys.bind_lease(key)], [token], client=pipe)
        pipe.execute()

    def release_lease(self, key: str, token: str) -> None:
        self.scripts.run("release_lease", [keys.bind_lease(key)], [token])

    def note_finish(self, key: str) -> None:
        """A delivery is over: its start (counted by :meth:`start`) is not a death to count."""
        self.r.hset(keys.bind_record(key), "starts", 0)

    def begin_attempt(
        self,
        key: str,
        signed: dict[str, Any] | None,
        *,
        account: str = "",
        probe_token: str = "",
        client: Any = None,
    ) -> Any:
        """Record that a vendor call is about to go out; returns the attempt number, or a
        :class:`Begin` refusal: ``TERMINAL``, or ``CANCELLED`` (an unbind cancelled the bind just
        now). With ``account``: ``HELD`` if calls are on hold (that account's, or the vendor's
        unless this delivery holds the probe lock with ``probe_token``; see :mod:`worker.execution.hold`).
        With ``client`` (a pipeline) the command is only queued on it (queue ``self.wait`` after
        it)."""
        ts = now_ms()
        begin_keys = [
            *self._record_keys(key),
            keys.account_hold(account),
            keys.VENDOR_HOLD,
            keys.VENDOR_PROBE,
            *self._finish_keys(key, ts),
        ]
        args: list[Any] = [
            seal(json.dumps(signed)) if signed else "",
            ts,
            1 if account else 0,
            probe_token,
            errors.CANCELLED,
            *self._finish_args(key, ts),
        ]
        if client is not None:
            return self.scripts.run("begin_attempt", begin_keys, args, client=client)
        return attempt_number(self._run("begin_attempt", begin_keys, args))

    def unbegin(self, key: str, attempt: int, *, first: bool) -> None:
        """Undo :meth:`begin_attempt` for a call that did not go out after all."""
        self.scripts.run("unbegin", [keys.bind_record(key)], [attempt, 1 if first else 0])

    def succeed(
        self,
        key: str,
        result: dict[str, Any],
        request_id: str,
        expire_at_s: int,
        hist: dict[str, Any] | None,
        *,
        lease_token: str = "",
        client: Any = None,
    ) -> Any:
        """Mark ``key`` succeeded (1; 0 if it was final already, -1 if there is no record). With
        ``lease_token``, also end the delivery in the same step (what :meth:`note_finish` and
        :meth:`release_lease` would do). With ``client`` (a pipeline) the command is only queued
        on it (queue ``self.wait`` after it; read its reply with ``int``)."""
        ts = now_ms()
        succeed_keys = [*self._record_keys(key), keys.bind_lease(key), *self._finish_keys(key, ts)]
        args = [
            *succeeded_args(json.dumps(result), request_id, ts, expire_at_s, hist),
            lease_token,
            *self._finish_args(key, ts),
        ]
        if client is not None:
            return self.scripts.run("succeed", succeed_keys, args, client=client)
        return int(self._run("succeed", succeed_keys, args))

    def schedule(
        self,
        key: str,
        *,
        due_ms: int,
        status: str = RETRYING,
        code: str = "",
        message: str = "",
        request_id: str = "",
        http_status: int | None = None,
        keep_inflight: bool = False,
        hist: dict[str, Any] | None = None,
        throttled: bool = False,
        outage: bool = False,
        durable: bool = False,
    ) -> int:
        """Put ``key`` on the delay queue (1; 0 if it is final, -1 if there is no record).
        ``durable``: WAIT for the replicas (a retry after a vendor answer, which settled the
        stored request)."""
        return int(
            self._run(
                "schedule",
                [keys.bind_record(key), keys.bind_history(key), self.delayed_key],
                [
                    status,
                    due_ms,
                    code,
                    message,
                    request_id,
                    "" if http_status is None else http_status,
                    now_ms(),
                    1 if keep_inflight else 0,
                    hist_json(hist),
                    1 if throttled else 0,
                    1 if outage else 0,
                ],
                durable=durable,
            )
        )

    def dead_letter(
        self,
        key: str,
        *,
        code: str,
        message: str,
        request_id: str = "",
        http_status: int | None = None,
        hist: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str | None:
        """Move ``key`` to the dead letters; returns the stream id (None if already terminal)."""
        ts = now_ms()
        res = self._run(
            "dead_letter",
            [
                keys.bind_record(key),
                keys.bind_history(key),
                self.delayed_key,
                keys.DEAD_LETTERS,
                self.watch_key,
                *self._finish_keys(key, ts),
            ],
            [
                code,
                message,
                request_id,
                "" if http_status is None else http_status,
                ts,
                hist_json(hist),
                json.dumps(extra or {}),
                *self._finish_args(key, ts),
            ],
        )
        if isinstance(res, bytes | str):
            return as_text(res)
        return None


def attempt_number(res: Any) -> int:
    """A ``begin_attempt`` answer: the attempt number, or its :class:`Begin` refusal."""
    n = int(res)
    return Begin(n) if n < 0 else n


def _started(what: Any, flat: Any, starts: Any, hold: Any) -> Start:
    rec = None
    if flat:
        it = iter(flat)
        rec = BindRecord.from_hash({as_text(k): as_text(v) for k, v in zip(it, it, strict=True)})
    return Start(StartOutcome(int(what)), rec, int(starts), Hold.from_json(hold))
