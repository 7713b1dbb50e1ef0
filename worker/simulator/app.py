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

A ``reset`` fault aborts the TCP connection (RST) after the call was applied. That needs the
server's transport, which uvicorn exposes on its ``send`` callable; under another server (or
``httpx.ASGITransport``) :class:`SimulatedConnectionReset` is raised instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from worker.simulator.answers import Answer
from worker.simulator.config import SimulatorConfig
from worker.simulator.gateway import IncomingRequest
from worker.simulator.state import Simulator

log = logging.getLogger("worker.simulator")

CYCLE_KEY = "worker.simulator.cycle"
BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n"
)
JSON_CONTENT_TYPE = "application/json;charset=utf-8"


class SimulatedConnectionReset(ConnectionResetError):
    """Raised by the app for a ``reset`` fault when there is no socket to drop (in-process use)."""


class _SimulatorApp(Starlette):
    """Starlette, remembering the server's per-request ``send`` owner (uvicorn's cycle)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[CYCLE_KEY] = getattr(send, "__self__", None)
        await super().__call__(scope, receive, send)


class _DropConnection(Response):
    """A 'response' that aborts the connection instead of answering."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cycle = scope.get(CYCLE_KEY)
        transport: Any = getattr(cycle, "transport", None)
        if transport is None:
            raise SimulatedConnectionReset("simulated connection reset")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # Linger 0: close() sends RST, so the client sees a reset, not a clean EOF.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        for _ in range(200):  # let connection_lost run, so the server does not answer 500 itself
            if getattr(cycle, "disconnected", True):
                break
            await asyncio.sleep(0.001)


def _simulator(request: Request) -> Simulator:
    sim: Simulator = request.app.state.simulator
    return sim


def _decode_pairs(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True, encoding="utf-8"))


def _headers(request: Request) -> dict[str, str]:
    merged: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        merged.setdefault(name.lower(), []).append(value)
    return {name: ",".join(values) for name, values in merged.items()}


async def _incoming(request: Request) -> IncomingRequest:
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    form: dict[str, str] = {}
    if body and content_type.startswith("application/x-www-form-urlencoded"):
        form = _decode_pairs(body.decode("utf-8", errors="replace"))
    return IncomingRequest(
        method=request.method,
        path=request.url.path or "/",
        query=_decode_pairs(request.scope.get("query_string", b"").decode("latin-1")),
        form=form,
        headers=_headers(request),
        body=body,
    )


async def _render(answer: Answer) -> Response:
    if answer.html:
        return HTMLResponse(BAD_GATEWAY_PAGE, status_code=answer.status, headers=answer.headers)
    if answer.post_fault == "reset":
        return _DropConnection()
    body = answer.body or {}
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    if answer.post_fault == "truncated_json":
        raw = raw[: max(1, len(raw) // 2)]
    if answer.post_fault == "slow" and answer.slow_s > 0:
        await asyncio.sleep(answer.slow_s)
    headers = {"x-acs-request-id": str(body.get("RequestId", "")), **answer.headers}
    return Response(raw, status_code=answer.status, headers=headers, media_type=JSON_CONTENT_TYPE)


async def api(request: Request) -> Response:
    """The Dypls RPC endpoint."""
    sim = _simulator(request)
    admission = sim.admit(await _incoming(request))
    if admission.latency_s > 0:
        await asyncio.sleep(admission.latency_s)
    return await _render(sim.execute(admission))


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
    app = _SimulatorApp(
        routes=[
            Route("/", api, methods=["GET", "POST"]),
            Route("/_simulator/faults", faults_endpoint, methods=["GET", "POST"]),
            Route("/_simulator/ledger", ledger_endpoint, methods=["GET"]),
            Route("/_simulator/bindings", bindings_endpoint, methods=["GET"]),
            Route("/_simulator/reset", reset_endpoint, methods=["POST"]),
            Route("/_simulator/clock", clock_endpoint, methods=["POST"]),
        ]
    )
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
    uvicorn.run(app, host=host, port=port, access_log=False, log_level=log_level)


def run_simulator(
    *, host: str = "127.0.0.1", port: int = 8088, log_level: str = "info", **config: Any
) -> None:
    """:func:`serve` a :class:`SimulatorConfig` built from ``config`` (its field names:
    ``latency_ms``, ``pool_size``, ``throttle_style``...), validated first; ``axb simulator``."""
    simulator_config = SimulatorConfig(**config)
    simulator_config.validate()
    serve(simulator_config, host, port, log_level=log_level)
