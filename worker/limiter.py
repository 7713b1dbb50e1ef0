"""A cluster-wide rate limiter: GCRA in one Lua script per operation, timed by Redis ``TIME``.

Every worker process on every host shares one Redis. Each scope (``account:<AccessKeyId>``,
``pool:<PoolKey>``) keeps one number there: its GCRA *theoretical arrival time* (TAT, integer
µs on the Redis clock). No client clock is ever read, so host clock skew cannot break the limit.

The algorithm (GCRA, virtual scheduling form) for one scope with rate ``r`` and burst ``B``:

- base emission interval ``T = 1/r``; burst tolerance ``τ = (B - 1)·T`` (fixed, in time units);
- a call asked for at ``now`` may go at ``allowed = max(now, TAT - τ)``;
- granting it moves ``TAT := max(TAT, allowed) + T / factor`` (``factor`` ≤ 1, see below).

**Guarantee.** For one scope, the slots handed out (``now + wait_s`` on the Redis clock) by
all processes together contain at most ``floor(L·r) + B`` slots in any closed interval of
length ``L``: at most ``floor(r) + B`` in any 1-second window, and ``r·L + B`` over a long
run. Proof sketch: slots ``i < j`` satisfy ``slot_j ≥ TAT_(j-1) - τ ≥ slot_i + (j - i)·T - τ``.
This holds whatever mix of scopes each call reserved, and through throttle penalties (they only
lengthen the interval; the tolerance stays ``(B - 1)/r``, so a throttle never frees a burst).
Intervals are rounded *up* and the tolerance *down* to whole µs, so rounding only errs on the
slow side (rates above 10⁶ qps are not representable).

A caller that sleeps ``wait_s`` calls no earlier than its slot, but may call later (network
round trip, scheduling). A caller that reserves its next call only after making the previous
one therefore adds at most one call to any window (its one late call from before the window):
with ``P`` such callers, observed call times hold at most ``floor(r) + B + P`` calls in any
1-second window.

**Late sends.** Slots obey the bound; sends do not, by the time a caller takes to wake and
send. A :class:`Limit` with ``late_s`` whose burst can pay for it (``(B - 1)·T ≥ late_s``)
shortens its tolerance by ``late_s`` (``B = 10`` at 100 qps: 9 calls at once, not 10), and
callers (``worker.execution``) send at most ``late_s`` after the slot, immediate grants
included, or give the slot up and reserve again: sends then keep to ``floor(r) + B`` in any
second too. The account limit carries ``late_s = 10 ms`` (:func:`late_allowance`).

**Throttling.** When the vendor answers ``isv.FLOW_LIMIT`` / ``Throttling.*``,
:meth:`RateLimiter.throttled` stores a penalty per scope: ``factor := max(min_factor,
factor_now · slowdown)`` and the Redis time it happened. The effective rate is
``r · factor(t)``, where the factor recovers **linearly** from its stored value back to 1.0
over ``recovery_s`` after the latest throttle; throttles in quick succession compound from the
partly recovered value down to ``min_factor``. While the factor is ``f`` the sustained rate is
``r·f`` and the burst after idleness is ``1 + floor((B - 1)·f)`` calls. The recovery time
travels with the penalty, so every process reads the same factor. ``retry_after_s`` also
pushes the TAT so that the scope's next slot is ``now + retry_after_s``, after which calls
resume at the slowed rate without a burst.

**Keys** (from :mod:`worker.keys`): ``rate_tat(scope)`` expires when the TAT passes (an absent
TAT means "idle", the same state), ``rate_penalty(scope)`` when the recovery is over.

A single Redis (or one primary) is assumed: a multi-scope reservation touches several hash
slots, and a step of the Redis server's clock moves every slot with it.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from worker import keys, lua

_US = 1_000_000
# A caller that wakes this long after its slot gives the slot up (see acquire_on_time).
LATE_S = 0.05
LATE_MIN_S = 0.01


def late_allowance(limits: Sequence[Limit]) -> tuple[float, bool]:
    """How late a caller may send after its slot, and whether that is strict.

    Strict when a limit's burst pays for its ``late_s`` (its tolerance is that much shorter):
    then every call, one granted at once too, goes out at most ``late_s`` after its slot or
    not at all, and sends (not only slots) keep to ``floor(R) + burst`` in any second.
    Otherwise a call that slept for its slot may be up to ``LATE_S`` late (the bound on sends
    is then ``R + burst`` plus the calls of ``LATE_S``)."""
    paid = [limit.late_s for limit in limits if limit.pays_for_lateness]
    if paid:
        return min(paid), True
    return LATE_S, False


@dataclass(frozen=True)
class Limit:
    """One rate limit: ``rate_qps`` calls per second sustained, ``burst`` at once after idleness."""

    scope: str  # e.g. "account:<AccessKeyId>" or "pool:<PoolKey>"
    rate_qps: float
    burst: int = 1
    # How late a caller may send after its slot, paid for out of the burst (see late_allowance).
    late_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.scope:
            raise ValueError("a limit needs a scope")
        if not (math.isfinite(self.rate_qps) and self.rate_qps > 0):
            raise ValueError(f"rate_qps must be a positive number, not {self.rate_qps!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst!r}")

    @property
    def interval_us(self) -> float:
        """The emission interval at full rate, in µs."""
        return _US / self.rate_qps

    @property
    def tolerance_us(self) -> int:
        """How far ahead of its TAT a call may go: ``(burst - 1)`` intervals in whole µs, less
        the lateness allowance when the burst is large enough to pay for it."""
        full = math.floor((self.burst - 1) * _US / self.rate_qps)
        late = math.ceil(self.late_s * _US)
        return full - late if 0 < late <= full else full

    @property
    def pays_for_lateness(self) -> bool:
        """Whether the burst pays for ``late_s``: then sends obey ``R + burst`` too."""
        return 0 < math.ceil(self.late_s * _US) <= math.floor((self.burst - 1) * _US / self.rate_qps)


@dataclass(frozen=True)
class Reservation:
    """The limiter's answer.

    ``granted``: a slot is reserved; sleep ``wait_s`` then call. Refused: nothing was consumed,
    and ``wait_s`` estimates how long until a slot could be had (if nobody else takes it first).
    """

    granted: bool
    wait_s: float


class RateLimiter:
    """Cluster-wide GCRA rate limiting over one Redis; see the module docstring for guarantees."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        recovery_s: float = 10.0,
        min_factor: float = 0.05,
        slowdown: float = 0.5,
        holdoff_s: float = 1.0,
    ) -> None:
        if not recovery_s > 0:
            raise ValueError(f"recovery_s must be positive, not {recovery_s!r}")
        if not 0 < min_factor <= 1:
            raise ValueError(f"min_factor must be in (0, 1], not {min_factor!r}")
        if not 0 < slowdown <= 1:
            raise ValueError(f"slowdown must be in (0, 1], not {slowdown!r}")
        self.recovery_s = recovery_s
        self.late_wakeups = 0  # slots given up because the caller woke too late (this process)
        self.min_factor = min_factor
        self.slowdown = slowdown
        # Throttled answers within this long of a reduction do not reduce again.
        self.holdoff_s = holdoff_s
        self._reserve = client.register_script(lua.source("limiter_reserve"))
        self._throttle = client.register_script(lua.source("limiter_throttle"))
        self._factor = client.register_script(lua.source("limiter_factor"))

    def reserve(self, limits: Sequence[Limit], *, max_wait_s: float) -> Reservation:
        """Atomically reserve one call across all ``limits``.

        The slot is the latest of the scopes' allowed times, and every scope is charged at that
        same slot. If the wait is at most ``max_wait_s`` the slot is committed and granted;
        otherwise nothing is written and the refusal carries the wait it would have needed.
        """
        return self.reservation(self._reserve(keys=_keys(limits), args=_reserve_args(limits, max_wait_s)))

    def reserve_into(self, pipe: Any, limits: Sequence[Limit], *, max_wait_s: float) -> None:
        """Queue :meth:`reserve` on a Redis pipeline, to share a round trip with other commands;
        read its reply with :meth:`reservation`."""
        script_keys, args = _reserve_call(tuple(limits), max_wait_s)
        lua.queue_script(pipe, self._reserve, script_keys, args)

    @staticmethod
    def reservation(raw: Any) -> Reservation:
        granted, wait_us = raw
        return Reservation(granted=bool(int(granted)), wait_s=int(wait_us) / _US)

    def acquire(
        self,
        limits: Sequence[Limit],
        *,
        max_wait_s: float,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> Reservation:
        """:meth:`reserve`, then sleep out the wait of a grant; a refusal returns at once."""
        reservation = self.reserve(limits, max_wait_s=max_wait_s)
        if reservation.granted and reservation.wait_s > 0:
            sleep(reservation.wait_s)
        return reservation

    def acquire_on_time(
        self,
        limits: Sequence[Limit],
        *,
        max_wait_s: float,
        late_s: float = LATE_S,
        tries: int = 3,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> Reservation:
        """:meth:`acquire`, but a caller that wakes more than ``late_s`` after its slot gives the
        slot up and reserves again instead of calling late.

        The slots obey the limit; late calls do not: on busy cores many threads wake late
        together and their calls land in the next second on top of that second's own slots
        (up to ``R + burst + callers`` in one second). A late slot is forfeited (its second
        simply carries one call fewer). After ``tries`` late wake-ups the answer is a refusal
        with no wait, so the caller re-schedules the call rather than sending it late.
        """
        waited = 0.0
        for _ in range(tries):
            reservation = self.reserve(limits, max_wait_s=max_wait_s)
            slot = time.monotonic() + reservation.wait_s
            if not reservation.granted:
                return reservation
            if reservation.wait_s > 0:
                sleep(reservation.wait_s)
            waited += reservation.wait_s
            if time.monotonic() - slot <= late_s:
                return Reservation(granted=True, wait_s=waited)
            self.late_wakeups += 1
        return Reservation(granted=False, wait_s=0.0)

    def throttled(self, limits: Sequence[Limit], *, retry_after_s: float | None = None) -> None:
        """The vendor throttled a call under ``limits``: slow every process down on these scopes.

        Each scope's factor becomes ``max(min_factor, factor_now * slowdown)`` and recovers
        linearly to 1.0 over ``recovery_s``. With ``retry_after_s``, no slot on these scopes
        is handed out before ``now + retry_after_s`` (slots already granted stand).
        """
        if retry_after_s is not None and not retry_after_s >= 0:
            raise ValueError(f"retry_after_s must be >= 0, not {retry_after_s!r}")
        retry_after_us = -1 if retry_after_s is None else math.ceil(retry_after_s * _US)
        args: list[str | int] = [
            repr(self.slowdown),
            repr(self.min_factor),
            math.ceil(self.recovery_s * _US),
            retry_after_us,
            math.ceil(self.holdoff_s * _US),
        ]
        args += [limit.tolerance_us for limit in _checked(limits)]
        self._throttle(keys=_keys(limits), args=args)

    def factor(self, scope: str) -> float:
        """The scope's current rate factor: 1.0 unthrottled, down to ``min_factor``."""
        return float(self._factor(keys=[keys.rate_penalty(scope)]))


@functools.lru_cache(maxsize=64)
def _reserve_call(limits: tuple[Limit, ...], max_wait_s: float) -> tuple[list[str], list[str | int]]:
    """The keys and arguments of a reservation: the same for every call under the same limits,
    so worked out once (the caller must not change them)."""
    return _keys(limits), _reserve_args(limits, max_wait_s)


def _reserve_args(limits: Sequence[Limit], max_wait_s: float) -> list[str | int]:
    if not max_wait_s >= 0:
        raise ValueError(f"max_wait_s must be >= 0, not {max_wait_s!r}")
    args: list[str | int] = [math.floor(max_wait_s * _US)]
    for limit in _checked(limits):
        args += [repr(limit.interval_us), limit.tolerance_us]
    return args


def _checked(limits: Sequence[Limit]) -> Sequence[Limit]:
    if not limits:
        raise ValueError("at least one limit is needed")
    scopes = [limit.scope for limit in limits]
    if len(set(scopes)) != len(scopes):
        raise ValueError(f"each scope may appear once: {scopes}")
    return limits


def _keys(limits: Sequence[Limit]) -> list[str]:
    out: list[str] = []
    for limit in limits:
        out += [keys.rate_tat(limit.scope), keys.rate_penalty(limit.scope)]
    return out
