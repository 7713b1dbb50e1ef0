"""The Dypls simulator on a real port, for any test: ``simulator`` fixture and ``RunningSimulator``.

One uvicorn server serves the whole session (starting it costs ~50 ms, but there is no reason to
pay it per test); the function-scoped ``simulator`` fixture resets its state, faults and clock
before each test, so every test sees a fresh vendor::

    def test_something(simulator: RunningSimulator) -> None:
        simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=2)
        ...  # call simulator.url
        assert simulator.ledger()["calls"][0]["code"] == "isp.SYSTEM_ERROR"

A test that needs its own configuration calls ``simulator.reset(SimulatorConfig(...))`` (the next
test gets the default again), or runs ``with RunningSimulator(config) as other: ...``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pytest
import uvicorn

from tests.waiting import wait_until
from worker.simulator import SimulatorConfig, create_app
from worker.simulator.app import SERVER_OPTIONS
from worker.simulator.config import Faults
from worker.simulator.state import Simulator

TEST_ACCESS_KEY_ID = "test-access-key-id"
TEST_ACCESS_KEY_SECRET = "test-access-key-secret"


def fixture_config(**overrides: Any) -> SimulatorConfig:
    """The fixture's configuration: the test credentials (never the environment's), 1000 X numbers."""
    values: dict[str, Any] = {
        "access_key_id": TEST_ACCESS_KEY_ID,
        "access_key_secret": TEST_ACCESS_KEY_SECRET,
        "seed": 1234,
    }
    values.update(overrides)
    return SimulatorConfig(**values)


class _ThreadServer(uvicorn.Server):
    """A uvicorn server that never touches signal handlers (it runs in a background thread)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class RunningSimulator:
    """The simulator served by uvicorn in a daemon thread on a free 127.0.0.1 port."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1") -> None:
        self.config = config or fixture_config()
        self.app = create_app(self.config)
        self.sim: Simulator = self.app.state.simulator
        self.host = host
        self.port = 0
        self._server: _ThreadServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """``host:port``, as the Tea SDK's ``Config(endpoint=...)`` wants it."""
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> RunningSimulator:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listening socket says TCP, and without it every keep-alive answer waits 40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,  # v1 URLs carry raw phone numbers
            lifespan="off",
            timeout_graceful_shutdown=1,
            **SERVER_OPTIONS,  # the server stack `axb simulator` runs (httptools, uvloop)
        )
        self._server = _ThreadServer(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="dypls-simulator", daemon=True
        )
        self._thread.start()
        server, thread = self._server, self._thread

        def started() -> bool:
            assert server.started or thread.is_alive(), "the simulator did not start"
            return bool(server.started)

        wait_until(started, timeout=timeout_s, interval=0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = None
        self._thread = None

    def __enter__(self) -> RunningSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- conveniences over the Simulator -------------------------------------------------------

    def set_faults(self, **changes: Any) -> Faults:
        return self.sim.set_faults(**changes)

    def clear_faults(self) -> Faults:
        return self.sim.clear_faults()

    def ledger(self) -> dict[str, Any]:
        return self.sim.ledger()

    def calls(self, action: str | None = None, out_id: str | None = None) -> list[dict[str, Any]]:
        return self.sim.calls(action=action, out_id=out_id)

    def bindings(self, *, live_only: bool = False) -> list[dict[str, Any]]:
        return self.sim.bindings(live_only=live_only)

    def bindings_for(self, out_id: str) -> list[str]:
        return self.sim.bindings_for(out_id)

    def reset(self, config: SimulatorConfig | None = None) -> None:
        """Fresh state; ``config`` replaces the configuration (credentials, pools, faults, clock)."""
        self.sim.reset(config or self.config)


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[RunningSimulator]:
    """The session's simulator server (use ``simulator`` for a clean state per test)."""
    server = RunningSimulator().start()
    yield server
    server.stop()


@pytest.fixture
def simulator(simulator_server: RunningSimulator) -> RunningSimulator:
    """A running simulator with fresh state, default faults (none) and the test credentials."""
    simulator_server.reset()
    return simulator_server
