"""Vendor outages wait instead of failing: the cluster-wide vendor hold (worker/execution/hold.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.pipeline_fixture import apply_env, wait_until
from tests.tcp_proxy import TcpProxy
from worker import errors
from worker.deadletters import DeadLetters
from worker.errors import AmbiguousVendorError, RetryableVendorError, ThrottledError, TransportError
from worker.execution import VENDOR
from worker.producer import enqueue_bind, enqueue_binds, enqueue_unbind
from worker.runtime import Runtime, get_runtime

OUTAGE_ENV = {
    # Two attempts only: before the hold, an outage of a second dead-lettered everything.
    "AXB_MAX_ATTEMPTS": "2",
    "AXB_CONNECT_TIMEOUT_S": "0.5",
    "AXB_VENDOR_HOLD_MIN_FAILURES": "3",
    "AXB_VENDOR_PROBE_EVERY_S": "0.2",
    "AXB_VENDOR_HOLD_RECHECK_S": "5",
}


def expiration(minutes: int = 600) -> str:
    return (datetime.now(UTC) + timedelta(hours=8, minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def request(i: int, tag: str = "out") -> dict[str, Any]:
    return {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"138{i:08d}",
        "PhoneNoB": f"139{i:08d}",
        "Expiration": expiration(),
        "OutId": f"{tag}-{i}",
    }


@pytest.fixture
def proxy(simulator: Any) -> Iterator[TcpProxy]:
    """The simulator behind a TCP proxy that can cut it off (its ledger lives on)."""
    p = TcpProxy("127.0.0.1", simulator.port).up()
    yield p
    p.close()


@pytest.fixture
def pipeline(pipeline: Runtime, proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """The pipeline fixture, calling the vendor through the proxy, with fast hold settings."""
    apply_env(monkeypatch, {**OUTAGE_ENV, "AXB_ENDPOINT": proxy.url})
    return get_runtime()


def vendor_hold_open(rt: Runtime) -> bool:
    return rt.holds.vendor() is not None


def test_most_calls_failing_on_the_vendors_side_open_the_hold_and_a_minority_does_not(
    pipeline: Runtime,
) -> None:
    """Failures are counted against answers cluster-wide; throttles and vendor codes are answers."""
    holds = pipeline.holds
    unreachable = TransportError(errors.TRANSPORT_ERROR, "not sent: ConnectError", sent=False)
    five_xx = RetryableVendorError("ServiceUnavailable", "busy", http_status=503)
    for _ in range(10):
        assert holds.after_call(None) is None
    holds.after_call(ThrottledError("Throttling.User", "slow down", http_status=503))
    holds.after_call(RetryableVendorError("isp.SYSTEM_ERROR", "x", http_status=200))
    assert [holds.after_call(five_xx) for _ in range(3)] == [None, None, None]
    assert holds.vendor() is None  # 3 failures against 12 answers
    opened = [holds.after_call(unreachable) for _ in range(10)]
    # 12 answers: the hold opens with the 9th unreachable call, when failures are at least half.
    assert opened[:8] == [None] * 8 and all(h is not None for h in opened[8:])
    hold = opened[-1]
    assert hold is not None and hold.scope == VENDOR and hold == opened[8]
    assert hold.reason == errors.VENDOR_UNREACHABLE and hold.code == errors.TRANSPORT_ERROR
    assert abs(hold.since_ms - time.time() * 1000) < 5000
    assert "vendor unreachable since" in hold.describe()

    # One probe at a time; its answer closes the hold.
    assert holds.try_probe("a") == "probe"
    assert holds.try_probe("b") == "hold"
    assert holds.after_call(unreachable, probe="a") is not None  # a failed probe frees the lock
    assert holds.try_probe("b") == "probe"
    assert holds.after_call(None, probe="b") is None
    assert holds.vendor() is None and holds.try_probe("c") == "go"


def test_an_outage_holds_binds_without_spending_attempts_and_they_bind_when_the_vendor_returns(
    celery_worker: Any, pipeline: Runtime, proxy: TcpProxy, simulator: Any
) -> None:
    """Connection refused for everyone: the hold opens with its reason, held binds wait in the held
    set (more vendor calls than AXB_MAX_ATTEMPTS for the probing key, none dead-lettered), and all
    bind within seconds of the vendor's return, each once."""
    proxy.down()
    handles = enqueue_binds([request(i) for i in range(30)]).handles
    wait_until(lambda: vendor_hold_open(pipeline), timeout=10)
    hold = pipeline.holds.vendor()
    assert hold is not None and hold.reason == errors.VENDOR_UNREACHABLE
    # The probing key calls again and again: far more than AXB_MAX_ATTEMPTS = 2, never dead-lettered.
    wait_until(
        lambda: max(r.attempts for r in pipeline.store.get_many([h.key for h in handles]) if r) >= 5,
        timeout=15,
    )
    wait_until(lambda: pipeline.holds.held_count(pipeline.settings.queue) >= 25, timeout=10)
    records = [r for r in pipeline.store.get_many([h.key for h in handles]) if r]
    assert len(records) == 30 and not any(r.terminal for r in records)
    held = [r for r in records if r.message.startswith("held: vendor unreachable")]
    assert len(held) >= 25
    assert all(r.attempts == r.outages or r.attempts - r.outages <= 1 for r in records)
    assert DeadLetters(pipeline.redis).depth() == 0

    proxy.up()
    back = time.monotonic()
    results = [h.result(timeout=20) for h in handles]
    took_s = time.monotonic() - back
    assert all(r.ok for r in results), [r.code for r in results if not r.ok]
    assert took_s < 10, took_s  # a probe within 0.2 s, then 30 binds
    assert pipeline.holds.vendor() is None
    assert pipeline.holds.held_count(pipeline.settings.queue) == 0
    assert all(len(simulator.bindings_for(f"out-{i}")) == 1 for i in range(30))
    assert DeadLetters(pipeline.redis).depth() == 0


def test_an_outage_dead_letters_a_bind_only_when_its_own_deadline_passes(
    celery_worker: Any, pipeline: Runtime, proxy: TcpProxy
) -> None:
    """``deadline=`` 3 s away, vendor down: dead-lettered at the deadline, not after two attempts."""
    proxy.down()
    deadline = datetime.now(UTC) + timedelta(seconds=3)
    res = enqueue_bind(request(1, "dl"), deadline=deadline).result(timeout=15)
    rec = pipeline.store.get("dl-1")
    assert rec is not None and rec.dead_lettered_at_ms is not None
    assert res.status == "dead_lettered" and res.code == errors.DEADLINE_EXCEEDED
    assert rec.dead_lettered_at_ms >= int(deadline.timestamp() * 1000)
    assert rec.attempts > 2  # more calls than AXB_MAX_ATTEMPTS: outages do not use them up
    assert errors.TRANSPORT_ERROR in rec.message


def test_a_lost_answer_is_still_proved_by_resending_it_after_the_hold(
    celery_worker: Any, pipeline: Runtime, proxy: TcpProxy, simulator: Any
) -> None:
    """A request the vendor applied whose answer was lost, and one that never reached it, both
    wait out an outage keeping their signed request; after it, re-sending it byte for byte
    proves the first (axb.AMBIGUOUS_OUTCOME, one binding) and binds the second (one binding)."""
    proxy.swallow_answers()
    applied = enqueue_bind(request(1, "lost"))
    wait_until(lambda: simulator.bindings_for("lost-1"), timeout=10)
    wait_until(lambda: (r := pipeline.store.get("lost-1")) is not None and r.inflight, timeout=10)
    proxy.down()  # the vendor goes away, then a request is lost on its way there
    proxy.up()
    proxy.mode = "cutting"
    never = enqueue_bind(request(2, "lost"))
    wait_until(lambda: (r := pipeline.store.get("lost-2")) is not None and r.inflight, timeout=10)
    proxy.down()
    wait_until(lambda: vendor_hold_open(pipeline), timeout=10)
    wait_until(
        lambda: all(
            (r := pipeline.store.get(k)) is not None and r.message.startswith("held: ") and r.inflight
            for k in ("lost-1", "lost-2")
        ),
        timeout=10,
    )
    proxy.up()
    first, second = applied.result(timeout=20), never.result(timeout=20)
    assert first.status == "dead_lettered" and first.code == errors.AMBIGUOUS_OUTCOME
    assert len(simulator.bindings_for("lost-1")) == 1
    assert second.ok and len(simulator.bindings_for("lost-2")) == 1
    hist = pipeline.store.history("lost-2")
    assert hist[-1]["code"] == "OK" and hist[-1]["replay"] is True  # the same signed request
    assert pipeline.holds.vendor() is None


def test_an_unbind_waits_out_a_vendor_outage(
    celery_worker: Any, pipeline: Runtime, proxy: TcpProxy, simulator: Any
) -> None:
    """Unbinds follow the same rule: held, no attempts used up, unbound once the vendor is back."""
    assert enqueue_bind(request(1, "ub")).result(timeout=15).ok
    proxy.down()
    handle = enqueue_unbind("ub-1")
    wait_until(
        lambda: (
            (r := pipeline.store.get(handle.key)) is not None
            and r.message.startswith("held: vendor unreachable")
            and r.attempts > 2
        ),
        timeout=15,
    )
    proxy.up()
    res = handle.result(timeout=15)
    assert res.ok and res.outcome == "unbound"
    calls = [c for c in simulator.ledger()["calls"] if c["action"] == "UnbindSubscription"]
    assert [c["code"] for c in calls] == ["OK"]


def test_a_vendor_answering_5xx_to_everything_opens_the_hold_with_that_reason(
    celery_worker: Any, pipeline: Runtime, simulator: Any
) -> None:
    """HTTP 5xx for every call: the hold opens as ``vendor answering 5xx``; all bind once it stops."""
    simulator.set_faults(http_5xx_rate=1.0)
    handles = enqueue_binds([request(i, "5xx") for i in range(10)]).handles
    wait_until(lambda: vendor_hold_open(pipeline), timeout=10)
    hold = pipeline.holds.vendor()
    assert hold is not None and hold.reason == errors.VENDOR_5XX and hold.code in errors.CODE_TABLE
    wait_until(
        lambda: max(r.attempts for r in pipeline.store.get_many([h.key for h in handles]) if r) >= 4,
        timeout=15,
    )
    simulator.clear_faults()
    assert all(h.result(timeout=15).ok for h in handles)
    assert DeadLetters(pipeline.redis).depth() == 0


def test_a_reset_is_a_failure_on_the_vendors_side_too() -> None:
    """Resets and read timeouts count as unreachable; a definite vendor code does not."""
    reset = AmbiguousVendorError(errors.TRANSPORT_ERROR, "sent, connection lost")
    assert errors.outage_reason(reset) == errors.VENDOR_UNREACHABLE
    assert errors.outage_reason(AmbiguousVendorError(errors.READ_TIMEOUT, "")) == errors.VENDOR_UNREACHABLE
    refused = errors.error_for("isv.MOBILE_NUMBER_ILLEGAL", "bad", http_status=400)
    assert errors.outage_reason(refused) == ""
    assert errors.outage_reason(AmbiguousVendorError("SignatureNonceUsed", "", http_status=500)) == ""
