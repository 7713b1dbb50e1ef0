"""The Dypls RPC endpoint (``GET|HEAD|POST /``) as a raw ASGI app: the simulator's hot path.

Written by hand, below Starlette, for speed: the simulator shares the machine's cores with the
worker that the benchmark measures, so every microsecond it spends per call is taken from the
worker. Starlette's routing, middleware, ``Request`` and ``Response`` objects cost about as much
CPU as the simulator's own work per call. This app answers exactly what the Starlette route it
replaced answered: the same ASGI messages (status, headers in the same order, body), which
``tests/test_simulator_rpc.py`` checks against a Starlette rendition of that route.

A ``reset`` fault aborts the TCP connection (RST) after the call was applied. That needs the
server's transport, which uvicorn exposes on its ``send`` callable (``send.__self__`` is its
per-request cycle, under h11 and httptools alike; the app keeps it in ``scope[CYCLE_KEY]``);
under another server (or ``httpx.ASGITransport``) :class:`SimulatedConnectionReset` is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from typing import Any
from urllib.parse import unquote

from starlette.types import Message, Receive, Scope, Send

from worker.simulator.answers import Answer
from worker.simulator.gateway import IncomingRequest
from worker.simulator.state import Simulator

BAD_GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n</body>\r\n</html>\r\n"
)
JSON_CONTENT_TYPE = b"application/json;charset=utf-8"
CYCLE_KEY = "worker.simulator.cycle"  # scope key: the server's per-request ``send`` owner
RPC_METHODS = frozenset({"GET", "HEAD", "POST"})
_FORM = "application/x-www-form-urlencoded"
_LINGER_0 = struct.pack("ii", 1, 0)


class SimulatedConnectionReset(ConnectionResetError):
    """Raised by the app for a ``reset`` fault when there is no socket to drop (in-process use)."""


class ClientGone(Exception):
    """The client disconnected before its request body was complete: nothing to answer."""


def decode_pairs(raw: str) -> dict[str, str]:
    """``urllib.parse.parse_qsl(raw, keep_blank_values=True)`` as a dict (the last value wins).

    By hand because parse_qsl's generality costs about as much as the signature check: pieces are
    split on ``&`` and the first ``=``, ``+`` is a space, ``%XY`` escapes are UTF-8 (errors
    replaced), empty pieces are skipped; only pieces that need it are unquoted.
    """
    pairs: dict[str, str] = {}
    for piece in raw.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value)
        pairs[name] = value
    return pairs


def incoming(scope: Scope, body: bytes) -> IncomingRequest:
    """The gateway's view of a request: header names lower-cased, repeated headers joined by ``,``."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    form: dict[str, str] = {}
    if body and headers.get("content-type", "").startswith(_FORM):
        form = decode_pairs(body.decode("utf-8", errors="replace"))
    path: str = scope["path"]
    if path != "/":  # as Starlette's URL has it (only reached through a root_path)
        path = path.replace("?", "%3F").replace("#", "%23").replace("\\", "%5C") or "/"
    return IncomingRequest(
        method=scope["method"],
        path=path,
        query=decode_pairs(scope.get("query_string", b"").decode("latin-1")),
        form=form,
        headers=headers,
        body=body,
    )


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        return body
    chunks: list[bytes] = []
    while True:
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


def _raw_headers(given: dict[str, str], length: int, content_type: bytes) -> list[tuple[bytes, bytes]]:
    """Headers as Starlette's ``Response`` makes them: the given ones (names lower-cased), then
    ``content-length`` and ``content-type`` unless given."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in given.items()]
    names = {name for name, _ in headers}
    if b"content-length" not in names:
        headers.append((b"content-length", str(length).encode("latin-1")))
    if b"content-type" not in names:
        headers.append((b"content-type", content_type))
    return headers


def response_messages(answer: Answer) -> tuple[Message, Message]:
    """The ``http.response.start`` and ``http.response.body`` messages of ``answer`` (no reset)."""
    if answer.html:
        raw = BAD_GATEWAY_PAGE
        headers = _raw_headers(answer.headers, len(raw), b"text/html; charset=utf-8")
    else:
        body = answer.body or {}
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if answer.post_fault == "truncated_json":
            raw = raw[: max(1, len(raw) // 2)]
        given = {"x-acs-request-id": str(body.get("RequestId", "")), **answer.headers}
        headers = _raw_headers(given, len(raw), JSON_CONTENT_TYPE)
    return (
        {"type": "http.response.start", "status": answer.status, "headers": headers},
        {"type": "http.response.body", "body": raw},
    )


async def drop_connection(cycle: Any) -> None:
    """Abort the connection of uvicorn's request ``cycle`` with an RST, not a clean EOF."""
    transport: Any = getattr(cycle, "transport", None)
    if transport is None:
        raise SimulatedConnectionReset("simulated connection reset")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # Linger 0: close() sends RST, so the client sees a reset, not a clean EOF.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
    transport.abort()
    for _ in range(200):  # let connection_lost run, so the server does not answer 500 itself
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0.001)


class RpcEndpoint:
    """ASGI app for the RPC endpoint of ``simulator``: admit, wait the latency, execute, answer."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive)
        except ClientGone:
            return
        sim = self.simulator
        admission = sim.admit(incoming(scope, body))
        if admission.latency_s > 0:
            await asyncio.sleep(admission.latency_s)
        answer = sim.execute(admission)
        if answer.post_fault == "reset" and not answer.html:
            await drop_connection(scope.get(CYCLE_KEY))
            return
        start, end = response_messages(answer)
        if answer.post_fault == "slow" and answer.slow_s > 0 and not answer.html:
            await asyncio.sleep(answer.slow_s)
        await send(start)
        await send(end)
