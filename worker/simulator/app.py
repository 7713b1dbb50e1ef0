"""The simulator over HTTP: a Starlette app speaking the Dypls RPC API, plus admin endpoints.

API (both signature styles): ``GET|POST /`` with ``BindAxb``, ``UnbindSubscription``,
``QuerySubscriptionDetail``, ``UpdateSubscription``.

Admin (JSON, for tests and demos):

- ``GET /_simulator/faults`` – current faults; ``POST`` a JSON object of :class:`Faults` fields to
  change some (``{"clear": true}`` turns all off first, ``{"restore": true}`` restores start-up's);
- ``GET /_simulator/ledger`` – see :meth:`Simulator.ledger`;
- ``GET /_simulator/bindings[?live=1]`` – every binding with its status;
- ``POST /_simulator/reset`` – forget everything, keep the configuration;
- ``POST /_simulator/clock`` – ``{"advance_s": 3600}`` moves business time on, ``{"reset": true}``
  goes back to the configured clock.

The RPC endpoint is a raw ASGI app (:mod:`worker.simulator.rpc`, hand-written for speed) that
the app calls before Starlette's routing; Starlette serves the admin endpoints.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from worker.simulator.config import SimulatorConfig
from worker.simulator.rpc import CYCLE_KEY, RPC_METHODS, RpcEndpoint, SimulatedConnectionReset
from worker.simulator.state import Simulator

__all__ = ["SimulatedConnectionReset", "create_app", "run_simulator", "serve"]

log = logging.getLogger("worker.simulator")

# uvicorn's fast stack: HTTP parsed in C (httptools) on libuv's loop (uvloop). The simulator
# shares the machine with the worker a benchmark measures, and with h11 on asyncio it spent
# about twice the CPU per call. No proxy headers: nothing here reads the client's address.
SERVER_OPTIONS: dict[str, Any] = {"http": "httptools", "loop": "uvloop", "proxy_headers": False}


class _SimulatorApp(Starlette):
    """Starlette for the admin endpoints; the RPC endpoint is called before its routing.

    The server's per-request ``send`` owner (uvicorn's cycle, which holds the transport that a
    ``reset`` fault aborts) is kept in the scope.
    """

    rpc: RpcEndpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[CYCLE_KEY] = getattr(send, "__self__", None)
            if scope["path"] == "/" and scope["method"] in RPC_METHODS and not scope.get("root_path"):
                await self.rpc(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _simulator(request: Request) -> Simulator:
    sim: Simulator = request.app.state.simulator
    return sim


async def faults_endpoint(request: Request) -> Response:
    sim = _simulator(request)
    if request.method == "GET":
        return JSONResponse(sim.faults.to_json_dict())
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object")
        if changes.pop("clear", False):
            sim.clear_faults()
        if changes.pop("restore", False):
            sim.restore_faults()
        faults = sim.set_faults(**changes)
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(faults.to_json_dict())


async def ledger_endpoint(request: Request) -> Response:
    return JSONResponse(_simulator(request).ledger())


async def bindings_endpoint(request: Request) -> Response:
    live_only = request.query_params.get("live", "").lower() in ("1", "true", "yes")
    bindings = _simulator(request).bindings(live_only=live_only)
    return JSONResponse({"bindings": bindings, "count": len(bindings)})


async def reset_endpoint(request: Request) -> Response:
    _simulator(request).reset()
    return JSONResponse({"reset": True})


async def clock_endpoint(request: Request) -> Response:
    sim = _simulator(request)
    try:
        data = await request.json()
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        if data.get("reset"):
            sim.set_clock(sim.config.clock)
        if "advance_s" in data:
            sim.advance_clock(float(data["advance_s"]))
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"now": sim.now().isoformat()})


def create_app(config: SimulatorConfig | None = None, *, simulator: Simulator | None = None) -> Starlette:
    """The simulator app; its state is ``app.state.simulator`` (a :class:`Simulator`)."""
    sim = simulator or Simulator(config)
    rpc = RpcEndpoint(sim)
    app = _SimulatorApp(
        routes=[
            Route("/", rpc, methods=["GET", "POST"]),  # only reached under a root_path
            Route("/_simulator/faults", faults_endpoint, methods=["GET", "POST"]),
            Route("/_simulator/ledger", ledger_endpoint, methods=["GET"]),
            Route("/_simulator/bindings", bindings_endpoint, methods=["GET"]),
            Route("/_simulator/reset", reset_endpoint, methods=["POST"]),
            Route("/_simulator/clock", clock_endpoint, methods=["POST"]),
        ]
    )
    app.rpc = rpc
    app.state.simulator = sim
    return app


def serve(
    config: SimulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8088,
    *,
    log_level: str = "info",
) -> None:
    """Run the simulator with uvicorn until interrupted. No access log: v1 URLs carry phone numbers."""
    import uvicorn

    app = create_app(config)
    sim: Simulator = app.state.simulator
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(log_level.upper())
    pools = ", ".join(f"{key} ({len(numbers)} X)" for key, numbers in sim.config.pool_numbers().items())
    log.info("Dypls simulator on http://%s:%d, pools: %s, faults: %s", host, port, pools, sim.faults)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level=log_level, **SERVER_OPTIONS)


def run_simulator(
    *, host: str = "127.0.0.1", port: int = 8088, log_level: str = "info", **config: Any
) -> None:
    """:func:`serve` a :class:`SimulatorConfig` built from ``config`` (its field names:
    ``latency_ms``, ``pool_size``, ``throttle_style``...), validated first; ``axb simulator``."""
    simulator_config = SimulatorConfig(**config)
    simulator_config.validate()
    serve(simulator_config, host, port, log_level=log_level)
