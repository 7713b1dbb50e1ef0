"""``axb api`` as a real process for the API tests: :class:`ApiProcess` and helpers.

Test modules start one API process per module (start-up costs about a second) on a queue of its
own, and override the ``pipeline`` fixture so that each test's Celery worker consumes that queue:

    api_server = api_server_fixture()          # module scope
    pipeline = api_pipeline_fixture()          # this module's tests: the API's queue
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import free_port
from tests.pipeline_fixture import FAST, ROOT, apply_env
from tests.waiting import http_serving, wait_until
from worker.runtime import Runtime, get_runtime, reset_runtime
from worker.settings import reset_settings_cache
from worker.tokens import SCOPES, TokenStore


class ApiProcess:
    """``python -m worker.cli api`` on a free port, with the given AXB_* environment."""

    def __init__(self, env: dict[str, str], *args: str, log_path: Path | None = None) -> None:
        self.env = env
        self.args = args
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> ApiProcess:
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "api", "--port", str(self.port), *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        with httpx.Client(timeout=1) as http:
            wait_until(lambda: http_serving(http, f"{self.url}/healthz", self.proc), timeout=timeout_s)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def api_env(redis_url: str, endpoint: str, queue: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXB_")}
    env.update(FAST)
    env.update(
        PYTHONPATH=str(ROOT),
        AXB_REDIS_URL=redis_url,
        AXB_ENDPOINT=endpoint,
        AXB_QUEUE=queue,
        AXB_ACCESS_KEY_ID="test-access-key-id",
        AXB_ACCESS_KEY_SECRET="test-access-key-secret",
        AXB_CALLBACK_ALLOW_PRIVATE="true",
        AXB_CALLBACK_SECRET="test-callback-secret",
        AXB_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def api_server_fixture(**extra: str) -> Any:
    """A module-scoped fixture: one ``axb api`` process (and its queue) for a test module."""

    @pytest.fixture(scope="module")
    def api_server(redis_server: Any, simulator_server: Any, tmp_path_factory: Any) -> Iterator[ApiProcess]:
        queue = f"axb.api.{uuid.uuid4().hex[:8]}"
        log = tmp_path_factory.mktemp("api") / "api.log"
        env = api_env(redis_server.url, simulator_server.url, queue, **extra)
        server = ApiProcess(env, log_path=log).start()
        yield server
        server.stop()

    return api_server


def api_pipeline_fixture() -> Any:
    """The ``pipeline`` fixture, on the module's API queue (so ``celery_worker`` serves the API)."""

    @pytest.fixture
    def pipeline(
        settings: Any, simulator: Any, api_server: ApiProcess, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[Runtime]:
        apply_env(
            monkeypatch,
            {
                **FAST,
                "AXB_ENDPOINT": simulator.url,
                "AXB_QUEUE": api_server.env["AXB_QUEUE"],
                "AXB_CALLBACK_ALLOW_PRIVATE": "true",
                "AXB_CALLBACK_SECRET": api_server.env["AXB_CALLBACK_SECRET"],
            },
        )
        rt = get_runtime()
        yield rt
        reset_runtime()
        reset_settings_cache()

    return pipeline


def make_token(redis_url: str, name: str, scopes: str = ",".join(SCOPES)) -> str:
    client = redis.Redis.from_url(redis_url)
    try:
        token, _ = TokenStore(client).create(name, scopes)
    finally:
        client.close()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
