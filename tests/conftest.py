"""Shared fixtures: a real ``redis-server`` for the test session, settings, the simulator."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.waiting import redis_answers, wait_until
from worker.settings import Settings, reset_settings_cache

pytest_plugins = ["tests.simulator_fixture", "tests.pipeline_fixture"]

# Tests whose assertions are about rates (limiter fidelity across threads and processes) run on
# their own, after the rest, so that the parallel phase of `make test` cannot starve them (see
# the Makefile). Every other test must be safe to run beside others: free ports, its own queue.
SERIAL_FILES = ("test_limiter.py", "test_worker_processes.py")
SERIAL_PREFIXES: tuple[str, ...] = ()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        if name in SERIAL_FILES or name.startswith(SERIAL_PREFIXES):
            item.add_marker(pytest.mark.serial)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway ``redis-server`` on a free port, with AOF so restarts keep data."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.exit("redis-server is not installed (apt-get install redis-server)", returncode=3)
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--dir",
                str(self.dir),
                "--maxmemory-policy",
                "noeviction",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: redis_answers(client, self.proc), timeout=10, interval=0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        """Stop gracefully (AOF flushed) and start again on the same port."""
        port = self.port
        self.stop()
        self.port = port
        self.start()


@pytest.fixture(autouse=True)
def fresh_settings_after_each_test() -> Iterator[None]:
    """Settings are read from the environment once and cached (so is the data key derived from
    them): a test that set AXB_* variables must not leave its settings to the next test of the
    same process, which may not ask for the ``settings`` fixture at all."""
    yield
    reset_settings_cache()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="axb-redis-") as d:
        server = RedisServer(Path(d))
        server.start()
        yield server
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A clean Redis database for one test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


TEST_AK = "test-access-key-id"
TEST_SECRET = "test-access-key-secret"


@pytest.fixture
def settings(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings pointing at the session Redis and the simulator's fake credentials."""
    for name in list(os.environ):
        if name.startswith("AXB_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AXB_REDIS_URL", redis_url)
    monkeypatch.setenv("AXB_ACCESS_KEY_ID", TEST_AK)
    monkeypatch.setenv("AXB_ACCESS_KEY_SECRET", TEST_SECRET)
    monkeypatch.setenv("AXB_ENDPOINT", "http://simulator.test")
    reset_settings_cache()
    return Settings()
