"""One POST of a completion callback: the process's HTTP client, the headers, the pinned send.

The body is the record's document (:mod:`worker.callbacks.document`), signed
(:mod:`worker.callbacks.signature`) and sent to the address that was checked
(:func:`worker.callbacks.url.resolve_target`); redirects are not followed. At most
``AXB_CALLBACK_CONCURRENCY`` deliveries of a process POST at once (:func:`process_state`).
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import certifi
import httpx

from worker import errors, keys
from worker.callbacks.document import document
from worker.callbacks.signature import HEADER as SIGNATURE_HEADER
from worker.callbacks.signature import signature_header
from worker.callbacks.url import Target, resolve_target
from worker.errors import InvalidRequestError
from worker.masking import mask_text
from worker.runtime import Runtime
from worker.store import BindRecord

USER_AGENT = "axb-callback/1"


def delivery_id(job: str) -> str:
    """``X-Axb-Delivery``: derived from the delivery's key, so every retry and replay carries it."""
    return keys.task_id_for(job, "delivery")


def header_key(key: str) -> str:
    """``X-Axb-Key``: the record's key, percent-encoded as UTF-8 (RFC 3986) so that any key fits
    in a header; letters, digits and ``-._~!$&'()*+,;=:@/`` stay as they are."""
    return quote(key, safe="!$&'()*+,;=:@/~")


def body_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Posted:
    """What one POST came to."""

    ok: bool
    code: str
    reason: str
    http_status: int | None = None
    latency_s: float = 0.0


_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "client": None, "slots": None}


def process_state(rt: Runtime) -> tuple[httpx.Client, threading.BoundedSemaphore]:
    pid = os.getpid()
    if _state["pid"] != pid:
        with _lock:
            if _state["pid"] != pid:
                s = rt.settings
                _state["client"] = httpx.Client(
                    verify=_tls_context(s.callback_ca_file),
                    timeout=httpx.Timeout(s.callback_timeout_s, connect=min(2.0, s.callback_timeout_s)),
                    follow_redirects=False,
                    trust_env=False,
                    limits=httpx.Limits(max_connections=max(4, s.callback_concurrency * 2)),
                    headers={"User-Agent": USER_AGENT},
                )
                _state["slots"] = threading.BoundedSemaphore(s.callback_concurrency)
                _state["pid"] = pid
    return _state["client"], _state["slots"]


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The public CAs (certifi, as httpx trusts by default), plus ``ca_file`` if given."""
    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


def reset_process_state() -> None:
    """Forget the client and slots (tests re-point settings between runs)."""
    with _lock:
        client = _state["client"]
        if client is not None and _state["pid"] == os.getpid():
            client.close()
        _state.update(pid=None, client=None, slots=None)


def post(rt: Runtime, job: str, target: BindRecord, url: str, *, show_numbers: bool) -> Posted:
    s = rt.settings
    secret = s.callback_secret.get_secret_value()
    if not secret:
        return Posted(
            False, errors.CALLBACK_FAILED, "AXB_CALLBACK_SECRET is not set: nothing is sent unsigned"
        )
    try:
        where = resolve_target(url, allow_private=s.callback_allow_private)
    except InvalidRequestError as err:
        return Posted(False, errors.CALLBACK_URL_REFUSED, f"CallbackUrl: {err.problems[0].reason}")
    client, _slots = process_state(rt)
    started = time.monotonic()
    try:
        body = body_bytes(document(target, show_numbers=show_numbers))
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, body, int(time.time())),
            "X-Axb-Key": header_key(target.key),
            "X-Axb-Delivery": delivery_id(job),
        }
        response = send_pinned(client, where, body, headers)
    except httpx.TimeoutException:
        return Posted(False, errors.CALLBACK_FAILED, _describe(where, "timed out"), None, _since(started))
    except Exception as exc:  # connection errors, and anything odd: a failed attempt, retried
        what = f"{type(exc).__name__}: {mask_text(str(exc))[:200]}"
        return Posted(False, errors.CALLBACK_FAILED, _describe(where, what), None, _since(started))
    latency_s = _since(started)
    if 200 <= response.status_code < 300:
        return Posted(True, "OK", "", response.status_code, latency_s)
    why = f"HTTP {response.status_code}"
    if 300 <= response.status_code < 400:
        why += " (redirects are not followed)"
    return Posted(False, errors.CALLBACK_FAILED, _describe(where, why), response.status_code, latency_s)


def send_pinned(client: httpx.Client, where: Target, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to the checked addresses in turn until one accepts the connection (the answer's
    body is not read). Host names the URL's host; TLS sends it as SNI and checks the
    certificate against it."""
    headers = {**headers, "Host": where.host_header}
    for i, address in enumerate(where.addresses[:3]):
        request = client.build_request("POST", where.pinned_url(address), content=body, headers=headers)
        if where.scheme == "https":
            request.extensions["sni_hostname"] = where.host
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError:
            if i + 1 >= min(3, len(where.addresses)):
                raise
            continue
        response.close()
        return response
    raise httpx.ConnectError("no address to connect to")


def _describe(where: Target, what: str) -> str:
    return f"{where.host}:{where.port}: {what}"


def _since(started: float) -> float:
    return time.monotonic() - started
