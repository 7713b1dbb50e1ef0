"""The cluster-wide GCRA limiter, against a real Redis.

Timing is reasoned about on the Redis clock: every bound below brackets the script's own
``TIME`` between two ``TIME`` reads taken by the test, so a slow or noisy machine loosens the
bounds instead of failing them.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest
import redis

from tests.waiting import wait_until
from worker import keys
from worker.limiter import Limit, RateLimiter, Reservation

US = 1e-6  # one microsecond: the limiter's resolution


def redis_now(client: redis.Redis) -> float:
    """The Redis server's clock, in seconds."""
    seconds, micros = client.time()
    return int(seconds) + int(micros) / 1e6


def tat_us(client: redis.Redis, scope: str) -> int | None:
    value = client.get(keys.rate_tat(scope))
    return None if value is None else int(value)


def charged_interval(limiter: RateLimiter, client: redis.Redis, limit: Limit) -> tuple[float, float]:
    """Bounds (s) on the interval one call is charged now: reserve on an idle scope, then probe.

    The probe's wait is ``interval - (t_probe - t_reserve)``, so the interval lies in
    ``[wait, wait + (t_after - t_before)]``; a probe granted at once only means the interval was
    shorter than the time elapsed, which the same bounds still express.
    """
    client.delete(keys.rate_tat(limit.scope))
    before = redis_now(client)
    assert limiter.reserve([limit], max_wait_s=0) == Reservation(True, 0.0)
    probe = limiter.reserve([limit], max_wait_s=0)
    after = redis_now(client)
    return probe.wait_s, probe.wait_s + (after - before)


# --- one process ---------------------------------------------------------------------------------


def test_limit_rejects_a_rate_or_burst_that_cannot_be_enforced() -> None:
    """A non-positive rate or a burst below one is refused when the limit is built."""
    for bad in ({"rate_qps": 0}, {"rate_qps": -1}, {"rate_qps": float("nan")}, {"rate_qps": 1, "burst": 0}):
        with pytest.raises(ValueError):
            Limit(scope="account:x", **bad)


def test_reserve_refuses_an_empty_or_repeated_set_of_scopes(redis_client: redis.Redis) -> None:
    """No limits at all, or one scope twice, is a programming error rather than a free pass."""
    limiter = RateLimiter(redis_client)
    with pytest.raises(ValueError):
        limiter.reserve([], max_wait_s=1)
    with pytest.raises(ValueError):
        limiter.reserve([Limit("account:a", 5), Limit("account:a", 10)], max_wait_s=1)


def test_after_the_burst_grants_are_spaced_one_interval_apart(redis_client: redis.Redis) -> None:
    """With rate R and burst B the first B reservations go at once, the rest 1/R apart."""
    rate, burst, n = 10.0, 3, 8
    limit = Limit("account:a", rate_qps=rate, burst=burst)
    limiter = RateLimiter(redis_client)

    before = redis_now(redis_client)
    waits = [limiter.reserve([limit], max_wait_s=60) for _ in range(n)]
    elapsed = redis_now(redis_client) - before

    assert all(r.granted for r in waits)
    assert [r.wait_s for r in waits[:burst]] == [0.0] * burst
    # wait_(k+1) - wait_k = 1/R - (time between the two reservations), clamped at a zero wait.
    for prev, nxt in zip(waits[burst - 1 :], waits[burst:], strict=False):
        gap = nxt.wait_s - prev.wait_s
        assert 1 / rate - elapsed - US <= gap <= 1 / rate + US
    # The last slot sits (n - B) intervals after the first reservation.
    last_slot = waits[-1].wait_s
    assert (n - burst) / rate - elapsed - US <= last_slot <= (n - burst) / rate + US


def test_a_refusal_consumes_nothing_and_says_how_long_to_wait(redis_client: redis.Redis) -> None:
    """Beyond max_wait_s the call is refused, the TAT is untouched, and wait_s is the real wait."""
    limit = Limit("account:a", rate_qps=2.0)  # one call per 0.5 s
    limiter = RateLimiter(redis_client)
    before = redis_now(redis_client)
    assert limiter.reserve([limit], max_wait_s=0) == Reservation(True, 0.0)
    committed = tat_us(redis_client, "account:a")

    refused = [limiter.reserve([limit], max_wait_s=0.01) for _ in range(5)]
    elapsed = redis_now(redis_client) - before

    assert tat_us(redis_client, "account:a") == committed
    for r in refused:
        if elapsed < 0.49:  # a stall longer than that would legitimately turn refusals into grants
            assert not r.granted
        assert 0.5 - elapsed - US <= r.wait_s <= 0.5 + US
    granted = limiter.reserve([limit], max_wait_s=60)
    assert granted.granted
    assert 0.5 - (redis_now(redis_client) - before) - US <= granted.wait_s <= refused[-1].wait_s + US


def test_the_slower_scope_governs_and_both_scopes_are_charged(redis_client: redis.Redis) -> None:
    """A call under an account and a pool limit waits for the slower one and commits both."""
    fast = Limit("account:a", rate_qps=100.0)
    slow = Limit("pool:FC1", rate_qps=10.0)
    limiter = RateLimiter(redis_client)

    before = redis_now(redis_client)
    assert limiter.reserve([fast, slow], max_wait_s=60) == Reservation(True, 0.0)
    second = limiter.reserve([fast, slow], max_wait_s=60)
    elapsed = redis_now(redis_client) - before

    assert second.granted
    assert 0.1 - elapsed - US <= second.wait_s <= 0.1 + US
    # Both scopes were charged at the same slot, each with its own interval.
    tat_fast, tat_slow = tat_us(redis_client, fast.scope), tat_us(redis_client, slow.scope)
    assert tat_fast is not None and tat_slow is not None
    assert tat_slow - tat_fast == 100_000 - 10_000

    # A refusal under both scopes charges neither, not even the one that had room.
    if elapsed < 0.09:
        refused = limiter.reserve([fast, slow], max_wait_s=0)
        assert not refused.granted
        assert tat_us(redis_client, fast.scope) == tat_fast
        assert tat_us(redis_client, slow.scope) == tat_slow


def test_acquire_sleeps_out_a_grant_and_returns_a_refusal_at_once(redis_client: redis.Redis) -> None:
    """acquire() sleeps the granted wait through the injected sleep, and never on a refusal."""
    limit = Limit("account:a", rate_qps=1.0)
    limiter = RateLimiter(redis_client)
    slept: list[float] = []
    assert limiter.acquire([limit], max_wait_s=5, sleep=slept.append).granted
    assert slept == []
    granted = limiter.acquire([limit], max_wait_s=5, sleep=slept.append)
    assert granted.granted and slept == [granted.wait_s] and granted.wait_s > 0
    refused = limiter.acquire([limit], max_wait_s=0, sleep=slept.append)
    assert not refused.granted and slept == [granted.wait_s]


def test_the_scripts_are_reloaded_after_redis_forgets_them(redis_client: redis.Redis) -> None:
    """EVALSHA falls back to loading the script when the server's script cache was flushed."""
    limiter = RateLimiter(redis_client)
    limiter.reserve([Limit("account:a", 5.0)], max_wait_s=1)
    redis_client.script_flush()
    assert limiter.reserve([Limit("account:b", 5.0)], max_wait_s=1).granted
    limiter.throttled([Limit("account:b", 5.0)])
    assert limiter.factor("account:b") < 1


# --- throttling ----------------------------------------------------------------------------------


def test_a_throttle_halves_the_rate_for_every_process(redis_url: str) -> None:
    """After one throttle a second, independent limiter charges 1/(R * 0.5) per call."""
    a, b = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url, decode_responses=True)
    limit = Limit("account:a", rate_qps=10.0)
    slow_recovery = 60.0  # the factor drifts by at most 0.5/60 per second while we measure
    thrower, other = RateLimiter(a, recovery_s=slow_recovery), RateLimiter(b, recovery_s=slow_recovery)

    low, high = charged_interval(other, b, limit)
    assert low - US <= 0.1 <= high + US

    thrower.throttled([limit])
    factor = other.factor(limit.scope)
    assert 0.5 <= factor <= 0.51
    low, high = charged_interval(other, b, limit)
    assert low - US <= 0.1 / 0.5 <= high + US
    a.close()
    b.close()


def test_the_factor_recovers_linearly_to_one_over_recovery_s(redis_client: redis.Redis) -> None:
    """With recovery_s=1 the factor climbs from 0.5 along a straight line and is 1.0 after 1 s."""
    limit = Limit("account:a", rate_qps=10.0)
    limiter = RateLimiter(redis_client, recovery_s=1.0)
    t0_low = redis_now(redis_client)
    limiter.throttled([limit])
    t0_high = redis_now(redis_client)

    seen: list[float] = []
    while True:
        before = redis_now(redis_client)
        factor = limiter.factor(limit.scope)
        after = redis_now(redis_client)
        # f(t) = 0.5 + 0.5 * (t - t0), clipped at 1, for some t0 in [t0_low, t0_high], t in [before, after].
        assert min(1.0, 0.5 + 0.5 * (before - t0_high)) - 1e-6 <= factor
        assert factor <= min(1.0, 0.5 + 0.5 * (after - t0_low)) + 1e-6
        seen.append(factor)
        if before - t0_high > 1.0:
            break
        time.sleep(0.05)

    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    assert len({round(f, 2) for f in seen}) >= 3  # it passed through intermediate values
    low, high = charged_interval(limiter, redis_client, limit)
    assert low - US <= 0.1 <= high + US


def test_repeated_throttles_compound_down_to_min_factor(redis_client: redis.Redis) -> None:
    """Each throttle halves the current factor until it reaches min_factor, where it stays."""
    limit = Limit("account:a", rate_qps=100.0)
    limiter = RateLimiter(redis_client, recovery_s=600.0, min_factor=0.05, slowdown=0.5, holdoff_s=0)
    factors = []
    for _ in range(7):
        limiter.throttled([limit])
        factors.append(limiter.factor(limit.scope))
    expected = [0.5, 0.25, 0.125, 0.0625, 0.05, 0.05, 0.05]
    # Recovery adds (1 - f) * elapsed / 600 s between a throttle and the read: tiny.
    for got, want in zip(factors, expected, strict=True):
        assert want <= got <= want * 1.02


def test_a_burst_of_throttled_answers_reduces_the_rate_once(redis_client: redis.Redis) -> None:
    """Many throttled answers from one overload, within the hold-off, halve the rate only once."""
    limit = Limit("account:a", rate_qps=100.0)
    limiter = RateLimiter(redis_client, recovery_s=600.0, holdoff_s=5.0)
    for _ in range(10):
        limiter.throttled([limit])
    assert 0.5 <= limiter.factor(limit.scope) <= 0.51


def test_retry_after_blocks_every_caller_until_it_has_passed(redis_url: str) -> None:
    """retry_after_s pushes the slot of every process to now + retry_after_s, with no burst after."""
    client = redis.Redis.from_url(redis_url)
    limit = Limit("account:a", rate_qps=20.0, burst=5)
    pool = Limit("pool:FC1", rate_qps=20.0)
    other_account = Limit("account:b", rate_qps=20.0)
    thrower, other = RateLimiter(client, recovery_s=60.0), RateLimiter(client, recovery_s=60.0)

    before = redis_now(client)
    thrower.throttled([limit], retry_after_s=2.0)
    refused = other.reserve([limit, pool], max_wait_s=1.0)
    first = other.reserve([limit], max_wait_s=10.0)
    second = other.reserve([limit], max_wait_s=10.0)
    elapsed = redis_now(client) - before

    assert not refused.granted
    assert 2.0 - elapsed - US <= refused.wait_s <= 2.0 + US
    assert tat_us(client, pool.scope) is None  # the refusal charged the pool scope nothing
    assert first.granted and 2.0 - elapsed - US <= first.wait_s <= 2.0 + US
    # The burst does not come back after the pause: the next slot is one (slowed) interval later.
    assert second.granted and second.wait_s - first.wait_s >= 0.05 / 0.51 - elapsed - US
    assert other.reserve([other_account], max_wait_s=0) == Reservation(True, 0.0)
    client.close()


def test_idle_scopes_leave_no_keys_behind(redis_client: redis.Redis) -> None:
    """The TAT expires once it has passed and the penalty once the recovery is over."""
    limit = Limit("account:a", rate_qps=20.0, burst=2)
    limiter = RateLimiter(redis_client, recovery_s=0.2)
    limiter.reserve([limit], max_wait_s=1)
    limiter.throttled([limit], retry_after_s=0.1)
    tat_key, penalty_key = keys.rate_tat(limit.scope), keys.rate_penalty(limit.scope)

    assert 0 < redis_client.pttl(tat_key) <= 1 + 100 + 50 + 1  # retry_after + tolerance + rounding
    assert 0 < redis_client.pttl(penalty_key) <= 201

    wait_until(lambda: not redis_client.exists(tat_key, penalty_key), timeout=10)
    assert redis_client.keys(f"{keys.PREFIX}:rl:*") == []
    assert limiter.factor(limit.scope) == 1.0


# --- many processes ------------------------------------------------------------------------------

RATE, BURST, DURATION_S, PROCESSES = 50.0, 5, 2.0, 2


def _hammer(redis_url: str, ready: Any, go: Any, out: Any) -> None:
    """Child process: acquire as fast as the limiter allows for DURATION_S; report call times."""
    client = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(client)
    limits = [Limit("account:shared", rate_qps=RATE, burst=BURST)]
    limiter.factor("account:shared")  # load the scripts before the start line
    ready.wait()
    go.wait()
    calls: list[float] = []
    end = time.monotonic() + DURATION_S
    while time.monotonic() < end:
        if limiter.acquire(limits, max_wait_s=1.0).granted:
            calls.append(time.time())  # the moment this process would call the vendor
    out.put(calls)
    client.close()


@pytest.mark.slow
def test_two_processes_together_stay_within_rate_plus_burst(redis_url: str) -> None:
    """Two spawned processes hammering one scope get ~R per second in total, never R + B in 1 s.

    Each slot is honoured (a call happens no earlier than its slot), but a call may happen late.
    A process reserves its next call only after making the previous one, so in any window at
    most one of its calls (the late one) belongs to a slot before the window: the observed
    bound is floor(R) + B + PROCESSES, whatever the machine's jitter.
    """
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Barrier(PROCESSES + 1), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(redis_url, ready, go, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    ready.wait(timeout=30)
    go.set()
    per_process = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0

    calls = sorted(t for proc_calls in per_process for t in proc_calls)
    assert all(proc_calls for proc_calls in per_process), "both processes got calls through"
    span = calls[-1] - calls[0]
    # Total: the limiter was saturated for ~DURATION_S, and never exceeded its long-run bound.
    assert 0.7 * RATE * DURATION_S <= len(calls) <= RATE * span + BURST + PROCESSES
    assert len(calls) <= RATE * (DURATION_S + 1.0) + BURST + PROCESSES

    busiest, j = 0, 0
    for i, start in enumerate(calls):
        while j < len(calls) and calls[j] <= start + 1.0:
            j += 1
        busiest = max(busiest, j - i)
    assert busiest <= int(RATE) + BURST + PROCESSES
    assert busiest >= RATE * 0.7  # the window check looked at a saturated second


def test_a_caller_that_wakes_late_gives_its_slot_up_instead_of_calling_late(
    redis_client: redis.Redis,
) -> None:
    """On time: granted. Woken late (a busy machine): the slot is forfeited and reserved again;
    late every time: refused with no wait, so the call is re-scheduled rather than sent late."""
    limiter = RateLimiter(redis_client)
    limit = Limit(scope="late", rate_qps=10, burst=1)  # each slot 100 ms after the last

    on_time = limiter.acquire_on_time([limit], max_wait_s=1.0, late_s=0.05)
    assert on_time.granted and limiter.late_wakeups == 0

    naps: list[float] = []

    def oversleep(seconds: float) -> None:
        naps.append(seconds)
        time.sleep(seconds + 0.08)  # woken 80 ms after the slot

    before = tat_us(redis_client, "late")
    late = limiter.acquire_on_time([limit], max_wait_s=1.0, late_s=0.05, tries=3, sleep=oversleep)
    assert not late.granted and late.wait_s == 0.0
    assert limiter.late_wakeups == 3 and len(naps) == 3
    after = tat_us(redis_client, "late")
    assert before is not None and after is not None and after > before  # the forfeited slots were charged

    once_late: list[int] = []

    def late_once(seconds: float) -> None:
        time.sleep(seconds + (0.08 if not once_late else 0))
        once_late.append(1)

    assert limiter.reserve([limit], max_wait_s=1.0).granted  # the next slot is in the future
    second_try = limiter.acquire_on_time([limit], max_wait_s=1.0, late_s=0.05, sleep=late_once)
    assert second_try.granted and limiter.late_wakeups == 4


def test_the_burst_pays_for_the_lateness_allowance_when_it_can() -> None:
    """R=100, burst 10, 10 ms late allowed: the tolerance is 80 ms instead of 90 (9 at once), so
    sends up to 10 ms late still keep to R + burst; a burst too small to pay keeps its full
    tolerance and the loose allowance."""
    from worker.limiter import LATE_S, late_allowance

    paying = Limit("account:a", rate_qps=100, burst=10, late_s=0.01)
    assert paying.tolerance_us == 80_000 and paying.pays_for_lateness
    assert late_allowance([paying]) == (0.01, True)
    small = Limit("account:b", rate_qps=1_000_000, burst=1000, late_s=0.01)  # 999 µs cannot pay 10 ms
    assert small.tolerance_us == 999 and not small.pays_for_lateness
    assert late_allowance([small]) == (LATE_S, False)
    plain = Limit("pool:p", rate_qps=100, burst=10)
    assert plain.tolerance_us == 90_000 and not plain.pays_for_lateness
    assert late_allowance([plain, paying]) == (0.01, True)
