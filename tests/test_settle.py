"""A batch's success written on the next bind's round trip (worker/execution/settle.py), and
pipelines of scripts without redis-py's SCRIPT EXISTS round trip (worker/redis_client.py).

Each bind of a many-key message costs one Redis round trip; every success is in Redis before the
next call goes out and before the message is acknowledged; a kill -9 after that round trip loses
nothing; the rate limit holds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from tests.pipeline_fixture import ROOT, apply_env, axb_env
from tests.test_pipeline import bindings_for, calls_for, request
from worker import keys
from worker.execution import deliver, deliver_many
from worker.execution import hold as hold_module
from worker.producer import enqueue_binds
from worker.redis_client import AxbRedis
from worker.runtime import Runtime, get_runtime


def _enqueue(n: int) -> list[str]:
    res = enqueue_binds([request(i) for i in range(n)])
    assert not res.rejected
    return [h.key for h in res.handles]


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts what is sent to Redis: one ``send_packed_command`` per command or pipeline."""
    count = [0]
    original = redis_lib.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(redis_lib.connection.AbstractConnection, "send_packed_command", counted)
    yield count


def test_each_bind_of_a_batch_costs_one_round_trip_and_is_written_before_the_next_call(
    pipeline: Runtime, simulator: Any, round_trips: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 keys: the starts (1), one round trip per key (the previous success, the slot and the
    stored request) and the last success (1); before, 62. When key i's call goes out, keys
    0..i-1 are succeeded in Redis."""
    monkeypatch.setattr(hold_module, "FLUSH_EVERY_S", 3600.0)  # (the vendor hold's answer count)
    warm, *key_list = _enqueue(21)
    assert deliver(pipeline, warm, "warm").status == "succeeded"  # the scripts loaded
    client = pipeline.client
    original = client.bind_axb_signed
    seen: list[list[str]] = []

    def send(signed: Any) -> Any:
        earlier = key_list[: len(seen)]
        seen.append([r.status if r else "" for r in pipeline.store.get_many(earlier)] if earlier else [])
        round_trips[0] -= 1 if earlier else 0  # (the check's own read)
        return original(signed)

    client.bind_axb_signed = send  # type: ignore[method-assign]
    round_trips[0] = 0
    out = deliver_many(pipeline, key_list, "test-delivery")
    assert [o.status for o in out] == ["succeeded"] * 20
    assert all(o.released for o in out)
    assert seen == [["succeeded"] * i for i in range(20)]
    assert round_trips[0] <= 20 + 2, round_trips[0]
    for i, key in enumerate(key_list):
        rec = pipeline.store.get(key)
        assert rec is not None and rec.status == "succeeded" and rec.starts == 0
        assert rec.inflight is None and rec.result is not None
        assert pipeline.redis.get(keys.bind_lease(key)) is None  # every lease freed
        assert len(bindings_for(simulator, f"order-{i + 1}")) == 1
    assert pipeline.store.history(key_list[0])[0]["code"] == "OK"


def test_a_batch_ends_with_its_last_success_written_when_a_key_needs_no_call(
    pipeline: Runtime, simulator: Any
) -> None:
    """A key that ends without a round trip of its own (already succeeded) does not leave the
    key before it unwritten: the success is written at once, and the outcomes say so."""
    key_list = _enqueue(3)
    assert deliver(pipeline, key_list[1], "first").status == "succeeded"
    out = deliver_many(pipeline, key_list, "second")
    assert [o.status for o in out] == ["succeeded"] * 3
    assert [o.attempts for o in out] == [1, 1, 1]
    for i, key in enumerate(key_list):
        rec = pipeline.store.get(key)
        assert rec is not None and rec.status == "succeeded"
        assert len(calls_for(simulator, f"order-{i}")) == 1


def test_a_success_finished_meanwhile_by_someone_else_reports_the_record_and_frees_the_lease(
    pipeline: Runtime, simulator: Any
) -> None:
    """If the record became final between the answer and its write (never while the lease is
    held; forced here), the outcome is the record's, and the delivery still ends."""
    key_list = _enqueue(2)
    client = pipeline.client
    original = client.bind_axb_signed

    def send(signed: Any) -> Any:
        answer = original(signed)
        if "order-0" in signed.url:  # dead-lettered by someone else after the call
            pipeline.store.dead_letter(key_list[0], code="test.OTHER", message="meanwhile")
        return answer

    client.bind_axb_signed = send  # type: ignore[method-assign]
    out = deliver_many(pipeline, key_list, "meanwhile")
    assert [o.status for o in out] == ["dead_lettered", "succeeded"]
    rec = pipeline.store.get(key_list[0])
    assert rec is not None and rec.status == "dead_lettered" and rec.starts == 0
    assert pipeline.redis.get(keys.bind_lease(key_list[0])) is None


_KILL_ON_SECOND_CALL = textwrap.dedent(
    """
    import os, signal, sys
    from worker.execution import deliver_many
    from worker.runtime import get_runtime

    rt = get_runtime()
    client = rt.client
    original, calls = client.bind_axb_signed, []

    def send(signed):
        calls.append(signed)
        if len(calls) == 2:  # the second key's call: after its round trip, before it is sent
            os.kill(os.getpid(), signal.SIGKILL)
        return original(signed)

    client.bind_axb_signed = send
    deliver_many(rt, sys.argv[1:], "doomed")
    """
)


def test_a_kill_9_after_the_shared_round_trip_keeps_the_earlier_success(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first key's success rides on the second key's round trip; the process is killed just
    before the second call goes out. The first key is succeeded (bound once); the second has its
    signed request stored, is delivered again and binds once; the third was never touched."""
    apply_env(monkeypatch, {"AXB_HARD_TIME_LIMIT_S": "2", "AXB_SOFT_TIME_LIMIT_S": "1"})
    key_list = _enqueue(3)
    child = subprocess.run(
        [sys.executable, "-c", _KILL_ON_SECOND_CALL, *key_list],
        env=axb_env(),
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    first, second, third = (pipeline.store.get(k) for k in key_list)
    assert first is not None and first.status == "succeeded" and first.starts == 0
    assert second is not None and second.status == "pending" and second.inflight is not None
    assert second.attempts == 1 and not calls_for(simulator, "order-1")
    assert third is not None and third.status == "pending" and third.attempts == 0
    # The dead process's leases run out (AXB_HARD_TIME_LIMIT_S + 5 s); then every key is delivered
    # again, each as a message of its own would be.
    deadline = time.monotonic() + 15
    while any(pipeline.redis.exists(keys.bind_lease(k)) for k in key_list[1:]):
        assert time.monotonic() < deadline, "the leases never ran out"
        time.sleep(0.2)
    for i, key in enumerate(key_list):
        deliver(pipeline, key, f"again-{i}")
    for i, key in enumerate(key_list):
        rec = pipeline.store.get(key)
        assert rec is not None and rec.status == "succeeded", (key, rec and rec.code)
        assert len(bindings_for(simulator, f"order-{i}")) == 1
    assert len(calls_for(simulator, "order-0")) == 1  # never re-sent: it was written


def test_a_batch_sends_no_faster_than_the_limiter_slots(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 25 calls/s, burst 1, the calls of a 40-key batch reach the vendor at most 25 + 1 in
    any second, and the batch takes about as long as the slots say."""
    s = apply_env(monkeypatch, {"AXB_RATE_LIMIT_QPS": "25", "AXB_RATE_LIMIT_BURST": "1"})
    assert s.rate_limit_qps == 25 and s.rate_limit_burst == 1
    runtime = get_runtime()
    key_list = _enqueue(40)
    t0 = time.monotonic()
    out = deliver_many(runtime, key_list, "paced")
    took_s = time.monotonic() - t0
    assert [o.status for o in out] == ["succeeded"] * 40
    times = sorted(c["time"] for c in simulator.ledger()["calls"] if c.get("action") == "BindAxb")
    assert len(times) == 40
    most = max(sum(1 for u in times[i:] if u - t < 1.0) for i, t in enumerate(times))
    assert most <= 25 + 1, most
    assert took_s >= 39 / 25 - 0.05


def test_a_pipeline_of_scripts_sends_no_script_exists_and_survives_a_script_flush(
    redis_url: str,
) -> None:
    """No SCRIPT EXISTS before a pipeline of scripts; after SCRIPT FLUSH (a Redis restart), the
    refused scripts are loaded and sent again, and the WAIT after them with them."""
    from worker.lua import Scripts

    client = AxbRedis.from_url(redis_url)
    try:
        scripts = Scripts(client, "release_lease")
        client.config_resetstat()
        for flush in (False, True):
            if flush:
                client.script_flush()
            pipe = client.pipeline(transaction=False)
            pipe.set("lease", "t")
            scripts.run("release_lease", ["lease"], ["other"], client=pipe)
            scripts.run("release_lease", ["lease"], ["t"], client=pipe)
            pipe.execute_command("WAIT", 0, 10)
            assert pipe.execute() == [True, 0, 1, 0]
            assert client.get("lease") is None
        stats = client.info("commandstats")
        assert "cmdstat_script|exists" not in stats
        assert stats["cmdstat_wait"]["calls"] >= 3  # once, then twice around the reload
        assert stats["cmdstat_set"]["calls"] == 2  # plain commands are never sent again
        with pytest.raises(redis_lib.ResponseError, match="WRONGTYPE"):  # errors raise, as before
            pipe = client.pipeline(transaction=False)
            pipe.set("str", "x")
            pipe.hget("str", "f")
            scripts.run("release_lease", ["lease"], ["t"], client=pipe)
            pipe.execute()
    finally:
        client.close()
