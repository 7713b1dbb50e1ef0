"""A full Redis (maxmemory reached under noeviction): one clear line, a typed error, no dead worker,
and nothing lost once memory is freed. Against a real redis-server of its own (tests/conftest.py
runs the shared one without a memory limit)."""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import RedisServer
from tests.pipeline_fixture import FAST, ROOT, WorkerProcess, apply_env, axb_env, wait_until
from worker.errors import AxbError, RedisFullError
from worker.producer import enqueue_bind, enqueue_binds, get_result
from worker.runtime import Runtime, get_runtime

pytestmark = pytest.mark.timeout(180)


class FullableRedis(RedisServer):
    def fill(self) -> None:
        """Reach maxmemory: a limit 2 MB above what is used, then a 4 MB value (freed by
        :meth:`free`: deleting the value)."""
        r = redis.Redis.from_url(self.url)
        r.config_set("maxmemory", 0)
        used = int(r.info("memory")["used_memory"])
        r.set("test:filler", b"x" * 4_000_000)
        r.config_set("maxmemory", used + 2_000_000)
        r.close()

    def free(self) -> None:
        r = redis.Redis.from_url(self.url)
        r.delete("test:filler")
        r.close()


@pytest.fixture(scope="module")
def full_redis() -> Iterator[FullableRedis]:
    with tempfile.TemporaryDirectory(prefix="axb-redis-full-") as d:
        server = FullableRedis(Path(d))
        server.start()
        yield server
        server.stop()


@pytest.fixture
def small_redis(
    full_redis: FullableRedis, simulator: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> Iterator[Runtime]:
    """The pipeline's settings pointing at the Redis that can be filled (and the simulator)."""
    client = redis.Redis.from_url(full_redis.url)
    client.config_set("maxmemory", 0)
    client.flushall()
    client.close()
    apply_env(
        monkeypatch,
        {**FAST, "AXB_REDIS_URL": full_redis.url, "AXB_ENDPOINT": simulator.url, "AXB_QUEUE": "axb.full"},
    )
    yield get_runtime()
    full_redis.free()


def expiration() -> str:
    return (datetime.now(UTC) + timedelta(hours=10)).strftime("%Y-%m-%d %H:%M:%S")


def request(i: int) -> dict[str, Any]:
    return {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"138{i:08d}",
        "PhoneNoB": f"139{i:08d}",
        "Expiration": expiration(),
        "OutId": f"full-{i}",
    }


def axb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "axb"), *args],
        env=axb_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_csv(path: Path, rows: range) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(request(0)))
        w.writeheader()
        for i in rows:
            w.writerow(request(i))


def assert_one_clear_line(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr[-3000:].splitlines())
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr + proc.stdout and "\n" not in err, err
    assert "Redis is full" in err and "maxmemory" in err and "run the same command again" in err


def test_every_command_against_a_full_redis_prints_one_line_and_exits_2(
    small_redis: Runtime, full_redis: FullableRedis, tmp_path: Path
) -> None:
    """enqueue, backfill, unbind, extend, dlq replay: one line naming the cause and how to resume."""
    assert enqueue_bind(request(1)).created  # a bind to unbind and extend
    full_redis.fill()
    write_csv(tmp_path / "trips.csv", range(100, 150))
    for args in (
        [
            "enqueue",
            "--pool-key",
            "FC100000001",
            "--phone-no-a",
            "13800000002",
            "--phone-no-b",
            "13900000002",
            "--expires-in",
            "60",
        ],
        ["backfill", str(tmp_path / "trips.csv")],
        ["unbind", "full-1"],
        ["extend", "full-1", "--expires-in", "120"],
        ["dlq", "replay", "--all"],
    ):
        proc = axb(*args)
        if args[0] == "dlq":  # nothing to replay: no write was needed
            assert proc.returncode == 0, proc.stderr
            continue
        assert_one_clear_line(proc)
        assert "13800000002" not in proc.stderr


def test_the_python_api_raises_a_typed_error_and_a_rerun_after_freeing_memory_loses_nothing(
    small_redis: Runtime, full_redis: FullableRedis, simulator: Any, tmp_path: Path
) -> None:
    """RedisFullError (an AxbError and a redis.RedisError); after freeing memory the same backfill
    resumes and every row binds exactly once."""
    full_redis.fill()
    with pytest.raises(RedisFullError) as caught:
        enqueue_bind(request(1))
    assert isinstance(caught.value, AxbError) and isinstance(caught.value, redis.RedisError)
    assert "run the same command again" in str(caught.value)
    with pytest.raises(RedisFullError):
        enqueue_binds([request(i) for i in range(2, 5)])
    write_csv(tmp_path / "trips.csv", range(200, 260))
    assert_one_clear_line(axb("backfill", str(tmp_path / "trips.csv")))

    full_redis.free()
    proc = axb("backfill", str(tmp_path / "trips.csv"), "--json")
    assert proc.returncode == 0, proc.stderr
    worker = WorkerProcess(axb_env(), "-c", "8", log_path=tmp_path / "w.log").start()
    try:
        wait_until(
            lambda: all((r := get_result(f"full-{i}")) is not None and r.ok for i in range(200, 260)),
            timeout=60,
        )
    finally:
        worker.stop()
    assert all(len(simulator.bindings_for(f"full-{i}")) == 1 for i in range(200, 260))


def test_a_worker_waits_out_a_full_redis_and_carries_on_when_memory_is_freed(
    small_redis: Runtime, full_redis: FullableRedis, simulator: Any, tmp_path: Path
) -> None:
    """Binds queued, then Redis fills: the worker process stays up (Celery's consumer retries, our
    delay pump logs one clear line and waits), and binds them all once memory is freed."""
    handles = enqueue_binds([request(i) for i in range(300, 340)]).handles
    full_redis.fill()
    log_path = tmp_path / "w.log"
    worker = WorkerProcess(axb_env(), "-c", "8", "-l", "INFO", log_path=log_path).start()
    try:
        wait_until(lambda: "Redis is full" in log_path.read_text(errors="replace"), timeout=30)
        assert worker.proc is not None and worker.proc.poll() is None
        full_redis.free()
        results = [h.result(timeout=60) for h in handles]
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.stop()
    assert all(r.ok for r in results), [r.code for r in results if not r.ok]
    assert all(len(simulator.bindings_for(f"full-{i}")) == 1 for i in range(300, 340))
