"""Redis Sentinel: the URL, every CLI command and the Python API through it, and WAIT.

A real primary, replica and three sentinels (tests/sentinel_cluster.py); the failover itself is
in tests/test_chaos_failover.py.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from prometheus_client import REGISTRY
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.pipeline_fixture import ROOT, WorkerProcess, apply_env, axb_env, wait_until
from tests.sentinel_cluster import PASSWORD, SentinelCluster
from tests.test_pipeline import expiration
from worker import keys
from worker.celery_app import celery_config
from worker.cli import main
from worker.connections import RedisUrlError, celery_connection_config, parse_sentinel_url
from worker.runtime import Runtime, get_runtime, reset_runtime
from worker.settings import Settings, reset_settings_cache

pytestmark = [pytest.mark.timeout(180)]

A, B = "13812345678", "13987654321"


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    with tempfile.TemporaryDirectory(prefix="axb-sentinel-") as d:
        c = SentinelCluster(Path(d)).start()
        try:
            yield c
        finally:
            c.stop()


@pytest.fixture
def on_sentinel(pipeline: Runtime, cluster: SentinelCluster, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """The pipeline's settings, with AXB_REDIS_URL the cluster's Sentinel URL (WAIT on: unset)."""
    apply_env(monkeypatch, {"AXB_REDIS_URL": cluster.url})
    c = cluster.data_client()
    c.flushall()
    c.close()
    return get_runtime()


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_a_sentinel_url_is_read_the_way_celery_writes_it() -> None:
    """Password on the first part, database on the last; kombu gets both on every part."""
    t = parse_sentinel_url("sentinel://:p%40ss@h1:26379;sentinel://h2:26380;sentinel://h3/2")
    assert t.sentinels == (("h1", 26379), ("h2", 26380), ("h3", 26379))
    assert (t.password, t.username, t.db) == ("p@ss", None, 2)
    assert t.celery_url() == (
        "sentinel://:p%40ss@h1:26379/2;sentinel://:p%40ss@h2:26380/2;sentinel://:p%40ss@h3:26379/2"
    )
    conf = celery_config(Settings(redis_url="sentinel://a:1;sentinel://b:2/3", redis_master_name="prod"))
    assert conf["broker_url"] == "sentinel://a:1/3;sentinel://b:2/3"
    assert conf["broker_transport_options"]["master_name"] == "prod"
    assert conf["broker_transport_options"]["visibility_timeout"] == 90  # the rest is kept
    assert conf["result_backend_transport_options"]["master_name"] == "prod"
    for bad, says in [
        ("sentinel://a:1;redis://b:2", "part 2 must start with sentinel://"),
        ("sentinel://:x@a:1;sentinel://:y@b:2", "different passwords"),
        ("sentinel://a:1/1;sentinel://b:2/2", "different databases"),
        ("sentinel://a:port", "port that is not a number"),
    ]:
        with pytest.raises(RedisUrlError, match=says) as err:
            celery_connection_config(Settings(redis_url=bad))
        assert "x@" not in str(err.value) and ":y" not in str(err.value)  # no password echoed


def test_a_redis_url_that_cannot_be_used_is_a_one_line_cli_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit code 2, the reason, no traceback and no password."""
    for url in ("sentinel://:hunter2@a:port", "mysql://:hunter2@a:1/0"):
        monkeypatch.setenv("AXB_REDIS_URL", url)
        reset_settings_cache()
        reset_runtime()
        out = CliRunner().invoke(main, ["dlq", "stats"])
        assert out.exit_code == 2, out.output
        assert "AXB_REDIS_URL" in out.output and len(out.output.strip().splitlines()) == 1
        assert "Traceback" not in out.output and "hunter2" not in out.output


def test_every_cli_command_and_the_python_api_work_through_a_sentinel_url(
    on_sentinel: Runtime, cluster: SentinelCluster, simulator: Any, tmp_path: Path
) -> None:
    """A real `axb worker` and every command that touches Redis, against a Sentinel URL only."""
    from worker import enqueue_bind, enqueue_binds, enqueue_extend, enqueue_unbind, get_result

    assert "sentinel://" in on_sentinel.settings.redis_url
    worker = WorkerProcess(axb_env(), "-c", "4", log_path=tmp_path / "w.log").start()
    watch = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dlq", "watch", "--count", "1", "--interval", "0.2"],
        env=axb_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        args = ["--pool-key", "FC100000001", "--phone-no-a", A, "--phone-no-b", B]
        out = run("enqueue", *args, "--expiration", expiration(), "--out-id", "s-1", "--wait", "--json")
        assert out.exit_code == 0, out.output + (tmp_path / "w.log").read_text()
        assert json.loads(out.stdout)["status"] == "succeeded"
        assert json.loads(run("result", "s-1", "--json").stdout)["status"] == "succeeded"

        csv = tmp_path / "rows.csv"
        csv.write_text(
            "PoolKey,PhoneNoA,PhoneNoB,Expiration,OutId\n"
            + "".join(f"FC100000001,1380000000{i},1390000000{i},{expiration()},bf-{i}\n" for i in range(3))
        )
        bf = run("backfill", str(csv), "--wait", "--json")
        assert bf.exit_code == 0, bf.output
        assert json.loads(bf.stdout)["succeeded"] == 3

        ext = run("extend", "s-1", "--expires-in", "180", "--wait", "--json")
        assert ext.exit_code == 0 and json.loads(ext.stdout)["status"] == "succeeded", ext.output
        unb = run("unbind", "s-1", "--wait", "--json")
        assert unb.exit_code == 0 and json.loads(unb.stdout)["status"] == "succeeded", unb.output

        bad = run(
            "enqueue", *args, "--pool-key", "FC999999999", "--expiration", expiration(), "--out-id", "s-2"
        )
        assert bad.exit_code == 0, bad.output
        watched, _ = watch.communicate(timeout=60)
        assert watch.returncode == 0 and b"key=s-2" in watched and b"isv.POOLKEY_NOT_EXISTS" in watched

        (entry,) = json.loads(run("dlq", "list", "--json").stdout)
        shown = json.loads(run("dlq", "show", entry["id"], "--json").stdout)
        assert shown["key"] == "s-2"
        assert json.loads(run("dlq", "stats", "--json").stdout)["total"] == 1
        replayed = json.loads(run("dlq", "replay", entry["id"], "--json").stdout)
        assert replayed["replayed"] and not replayed["skipped"]
        # The replayed bind is refused again: a new entry replaces the replayed one.
        wait_until(
            lambda: (
                [e["id"] != entry["id"] for e in json.loads(run("dlq", "list", "--json").stdout)] == [True]
            ),
            timeout=30,
        )
        assert run("dlq", "purge", "--all", "--yes").exit_code == 0
        assert json.loads(run("dlq", "list", "--json").stdout) == []

        # The Python API.
        req = {"PoolKey": "FC100000001", "PhoneNoA": A, "PhoneNoB": B, "Expiration": expiration()}
        assert enqueue_bind({**req, "OutId": "py-1"}).result(timeout=30).status == "succeeded"
        bulk = enqueue_binds([{**req, "OutId": f"py-b{i}"} for i in range(5)])
        assert len(bulk.handles) == 5 and not bulk.rejected
        assert all(h.result(timeout=30).status == "succeeded" for h in bulk.handles)
        assert enqueue_extend("py-1", expiration(240)).result(timeout=30).status == "succeeded"
        assert enqueue_unbind("py-1").result(timeout=30).status == "succeeded"
        res = get_result("py-b0")
        assert res is not None and res.status == "succeeded"
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait(5)
        worker.stop()
    # Everything went to the primary the sentinels name (not to any other Redis).
    primary = cluster.data_client()
    try:
        assert primary.exists(keys.bind_record("s-1"), keys.bind_record("py-b4")) == 2
    finally:
        primary.close()


def test_a_producer_call_returns_only_once_a_replica_has_its_records(
    on_sentinel: Runtime, cluster: SentinelCluster
) -> None:
    """With WAIT on (the Sentinel default), enqueue waits for a replica that is behind."""
    from worker import enqueue_bind

    assert on_sentinel.store.wait.replicas == 1
    with replica_asleep(cluster, 1.0):
        started = time.monotonic()
        enqueue_bind({**REQ, "OutId": "w-1"})
        took = time.monotonic() - started
    assert took > 0.5  # it waited for the replica to wake up and acknowledge
    replica = replica_client(cluster)
    try:
        assert replica.exists(keys.bind_record("w-1")) == 1
    finally:
        replica.close()


def test_a_wait_that_times_out_is_counted_and_the_writes_stand(
    on_sentinel: Runtime, cluster: SentinelCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica too slow for AXB_REDIS_WAIT_TIMEOUT_MS: the call returns after the timeout, the
    shortfall is counted, and WAIT pauses (the next call does not wait)."""
    from worker import enqueue_bind

    apply_env(monkeypatch, {"AXB_REDIS_WAIT_TIMEOUT_MS": "1000"})
    before = shortfalls()
    with replica_asleep(cluster, 3.0):
        started = time.monotonic()
        enqueue_bind({**REQ, "OutId": "t-1"})
        first = time.monotonic() - started
        started = time.monotonic()
        enqueue_bind({**REQ, "OutId": "t-2"})
        second = time.monotonic() - started
    assert 0.9 < first < 2.5 and second < 0.6  # a second WAIT would take the 1 s timeout again
    assert shortfalls() == before + 1
    assert get_runtime().store.get("t-1") is not None and get_runtime().store.get("t-2") is not None


REQ = {"PoolKey": "FC100000001", "PhoneNoA": A, "PhoneNoB": B, "Expiration": expiration(600)}


@contextlib.contextmanager
def replica_asleep(cluster: SentinelCluster, seconds: float) -> Iterator[None]:
    """The replica blocked in DEBUG SLEEP (it neither applies nor acknowledges) for ``seconds``."""
    replica = replica_client(cluster)
    sleeper = threading.Thread(target=replica.execute_command, args=("DEBUG", "SLEEP", seconds))
    sleeper.start()
    wait_until(lambda: not answers(replica_client(cluster, socket_timeout_s=0.05)), timeout=seconds / 2)
    try:
        yield
    finally:
        sleeper.join(seconds + 5)
        replica.close()


def replica_client(cluster: SentinelCluster, socket_timeout_s: float = 10) -> redis.Redis:
    """A client of the replica. A short ``socket_timeout_s`` is a probe: it is not retried."""
    primary = cluster.primary_port()
    (port,) = [p for p in cluster.nodes if p != primary]
    if socket_timeout_s < 1:
        return redis.Redis(
            port=port, password=PASSWORD, socket_timeout=socket_timeout_s, retry=Retry(NoBackoff(), 0)
        )
    return redis.Redis(port=port, password=PASSWORD, socket_timeout=socket_timeout_s)


def answers(client: redis.Redis) -> bool:
    """Whether the server answers a PING within the client's socket timeout (then closes it).
    A server blocked in DEBUG SLEEP does not: the readiness check for :func:`replica_asleep`."""
    try:
        return bool(client.ping())
    except redis.TimeoutError:
        return False
    finally:
        client.close()


def shortfalls() -> float:
    return REGISTRY.get_sample_value("axb_redis_wait_shortfalls_total") or 0.0


def test_clients_follow_a_failover_to_the_new_primary(on_sentinel: Runtime, cluster: SentinelCluster) -> None:
    """SENTINEL FAILOVER: the old primary turns replica under our idle connections. Plain
    commands, a script with WAIT and a producer call all land on the new primary. (Runs last:
    the module's cluster has another primary afterwards.)"""
    from worker import enqueue_bind

    enqueue_bind({**REQ, "OutId": "f-1"})
    enqueue_bind({**REQ, "OutId": "f-0"})
    assert on_sentinel.store.dead_letter("f-0", code="test", message="before") is not None
    old = cluster.primary_port()
    sentinel = redis.Redis(port=next(iter(cluster.sentinel_procs)), socket_timeout=5)
    try:
        # NOGOODSLAVE while the sentinels still hold the replica's earlier DEBUG SLEEP against it.
        wait_until(lambda: start_failover(sentinel), timeout=30, interval=0.5)
    finally:
        sentinel.close()
    new = cluster.wait_promotion(old, timeout_s=30)
    # The old primary is a replica now; the pool's idle connections still point at it.
    wait_until(lambda: replica_role(cluster, old), timeout=30)
    # A script that writes nothing (f-0 is already terminal) with its WAIT, a script that writes.
    assert on_sentinel.store.dead_letter("f-0", code="test", message="again") is None
    assert on_sentinel.store.schedule("f-1", due_ms=1, code="test", durable=True) == 1
    on_sentinel.redis.set("after-failover", "1")
    enqueue_bind({**REQ, "OutId": "f-2"})
    primary = cluster.data_client(new)
    try:
        assert primary.get("after-failover") == b"1"
        assert primary.hget(keys.bind_record("f-1"), "code") == b"test"
        assert primary.exists(keys.bind_record("f-2")) == 1
    finally:
        primary.close()


def replica_role(cluster: SentinelCluster, port: int) -> bool:
    c = cluster.data_client(port)
    try:
        return bool(c.info("replication").get("role") == "slave")
    except redis.RedisError:
        return False
    finally:
        c.close()


def start_failover(sentinel: redis.Redis) -> bool:
    try:
        sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
    except redis.ResponseError as err:
        if "NOGOODSLAVE" in str(err):
            return False
        raise
    return True


def test_the_apis_asyncio_client_reaches_the_primary_through_the_sentinels(on_sentinel: Runtime) -> None:
    """``axb api``'s client (``?wait``'s pub/sub) is built from the same Sentinel URL: it writes
    to the primary and hears what the primary publishes."""
    import asyncio

    from worker.connections import async_redis_client

    async def roundtrip() -> tuple[bool, Any]:
        client = async_redis_client(on_sentinel.settings)
        try:
            pubsub = client.pubsub()
            await pubsub.subscribe("axb:test:sentinel-async")
            await pubsub.get_message(timeout=2)  # the subscription's confirmation
            wrote = await client.set("axb:test:sentinel-async", "1")
            on_sentinel.redis.publish("axb:test:sentinel-async", "done")
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            await pubsub.aclose()
            return bool(wrote), message and message["data"]
        finally:
            await client.aclose()

    wrote, heard = asyncio.run(roundtrip())
    assert wrote and heard == b"done"
    assert on_sentinel.redis.get("axb:test:sentinel-async") == b"1"
