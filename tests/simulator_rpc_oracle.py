"""The oracle for ``tests/test_simulator_rpc.py``: the simulator's RPC route as the Starlette
endpoint it was before it was written by hand (:mod:`worker.simulator.rpc`), unchanged but for
names. Only for in-process use (a ``reset`` fault raises :class:`SimulatedConnectionReset`).
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from worker.simulator import SimulatedConnectionReset, Simulator
from worker.simulator.answers import Answer
from worker.simulator.gateway import IncomingRequest

_ORACLE_CYCLE = "oracle.cycle"
_BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n"
)


class _OracleApp(Starlette):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_ORACLE_CYCLE] = getattr(send, "__self__", None)
        await super().__call__(scope, receive, send)


class _OracleDrop(Response):
    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if getattr(scope.get(_ORACLE_CYCLE), "transport", None) is None:
            raise SimulatedConnectionReset("simulated connection reset")
        raise AssertionError("the oracle runs in process only")


def _oracle_pairs(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True, encoding="utf-8"))


async def _oracle_incoming(request: Request) -> IncomingRequest:
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    form: dict[str, str] = {}
    if body and content_type.startswith("application/x-www-form-urlencoded"):
        form = _oracle_pairs(body.decode("utf-8", errors="replace"))
    merged: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        merged.setdefault(name.lower(), []).append(value)
    return IncomingRequest(
        method=request.method,
        path=request.url.path or "/",
        query=_oracle_pairs(request.scope.get("query_string", b"").decode("latin-1")),
        form=form,
        headers={name: ",".join(values) for name, values in merged.items()},
        body=body,
    )


async def _oracle_render(answer: Answer) -> Response:
    if answer.html:
        return HTMLResponse(_BAD_GATEWAY_PAGE, status_code=answer.status, headers=answer.headers)
    if answer.post_fault == "reset":
        return _OracleDrop()
    body = answer.body or {}
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    if answer.post_fault == "truncated_json":
        raw = raw[: max(1, len(raw) // 2)]
    if answer.post_fault == "slow" and answer.slow_s > 0:
        await asyncio.sleep(answer.slow_s)
    headers = {"x-acs-request-id": str(body.get("RequestId", "")), **answer.headers}
    return Response(
        raw, status_code=answer.status, headers=headers, media_type="application/json;charset=utf-8"
    )


def oracle_app(sim: Simulator) -> Starlette:
    async def api(request: Request) -> Response:
        admission = sim.admit(await _oracle_incoming(request))
        if admission.latency_s > 0:
            await asyncio.sleep(admission.latency_s)
        return await _oracle_render(sim.execute(admission))

    return _OracleApp(routes=[Route("/", api, methods=["GET", "POST"])])
