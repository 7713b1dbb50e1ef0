"""The hand-written vendor transport (worker/vendor/wire.py): httpcore's behaviour is the reference.

Every server behaviour is tried through ``httpx.HTTPTransport`` and through ``WireTransport``:
the same answer, or the same httpx exception class. Then the contract the vendor client builds
on: what may have reached the vendor is never sent twice, and fails as ambiguous; what cannot
have left fails as not sent.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.scripted_server import (
    OK,
    OK_BODY,
    ScriptedServer,
    Step,
    answer,
    close_after,
    hang_up,
    reset,
    send,
    silent,
)
from worker import errors
from worker.errors import AmbiguousVendorError, TransportError
from worker.settings import Settings
from worker.vendor import DyplsClient, parse_bind_request
from worker.vendor.wire import WireTransport

pytestmark = [pytest.mark.timeout(60)]

TIMEOUTS = {"connect": 0.5, "read": 0.5, "write": 0.5, "pool": 0.5}
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\n"
)


def get(transport: httpx.BaseTransport, url: str, **headers: str) -> httpx.Response:
    request = httpx.Request("POST", url + "/?a=b%20c", headers=headers, extensions={"timeout": TIMEOUTS})
    response = transport.handle_request(request)
    try:
        response.read()
    finally:
        response.close()
    return response


def outcome(make: Callable[[], httpx.BaseTransport], steps: Callable[[threading.Event], list[Step]]) -> Any:
    """What one request gets from a server following ``steps``: (status, body) or the error class."""
    stop = threading.Event()
    with ScriptedServer(steps(stop)) as server:
        transport = make()
        try:
            r = get(transport, server.url)
            return r.status_code, r.content, r.headers.get("t")
        except httpx.HTTPError as exc:
            return type(exc)
        finally:
            stop.set()
            transport.close()


BEHAVIOURS: dict[str, Callable[[threading.Event], list[Step]]] = {
    "ok": lambda _: [send(OK)],
    "ok, connection close": lambda _: [send(answer(extra=b"Connection: close\r\n"), then_close=True)],
    "chunked": lambda _: [send(CHUNKED)],
    "100 continue first": lambda _: [send(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)],
    "body to EOF": lambda _: [send(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", then_close=True)],
    "HTTP/1.0": lambda _: [send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", then_close=True)],
    "bare LF lines": lambda _: [send(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")],
    "502 HTML": lambda _: [send(answer(b"<html>bad gateway</html>", status=b"502 Bad Gateway"))],
    "closed, no answer": lambda _: [hang_up()],
    "reset": lambda _: [reset()],
    "never answers": lambda stop: [silent(stop)],
    "half a body": lambda _: [send(OK[:-20], then_close=True)],
    "half a head": lambda _: [send(b"HTTP/1.1 200 OK\r\nContent-Le", then_close=True)],
    "garbage status line": lambda _: [send(b"SSH-2.0-OpenSSH_9.0\r\n\r\n")],
    "bad status code": lambda _: [send(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n")],
    "header without colon": lambda _: [send(b"HTTP/1.1 200 OK\r\nbroken\r\nContent-Length: 0\r\n\r\n")],
    "bad Content-Length": lambda _: [send(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")],
    "two Content-Lengths": lambda _: [
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok")
    ],
    "bad chunk size": lambda _: [send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")],
    "gzip answer": lambda _: [
        send(
            answer(
                b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\xcf\x06\x00G\xdd\xdcy\x02\x00\x00\x00",
                extra=b"Content-Encoding: gzip\r\n",
            )
        )
    ],
}


@pytest.mark.parametrize("behaviour", list(BEHAVIOURS))
def test_each_server_behaviour_ends_as_with_httpx_own_transport(behaviour: str) -> None:
    """Same answer, or the same httpx exception class, as ``httpx.HTTPTransport`` (httpcore)."""
    reference = outcome(httpx.HTTPTransport, BEHAVIOURS[behaviour])
    ours = outcome(WireTransport, BEHAVIOURS[behaviour])
    assert ours == reference
    expected_errors = {
        "closed, no answer": httpx.RemoteProtocolError,
        "reset": httpx.ReadError,
        "never answers": httpx.ReadTimeout,
        "half a body": httpx.RemoteProtocolError,
        "garbage status line": httpx.RemoteProtocolError,
    }
    if behaviour in expected_errors:  # the reference itself did what the client's table expects
        assert ours is expected_errors[behaviour]
    if behaviour in ("ok", "100 continue first"):
        assert ours == (200, OK_BODY, None)
    if behaviour == "bare LF lines":
        assert ours == (200, b"ok", None)
    if behaviour == "chunked":
        assert ours == (200, b"hello world", None)


def test_a_refused_port_and_a_header_that_would_split_the_request_fail_before_sending() -> None:
    with ScriptedServer([send(OK)]) as server:
        port = server.port
    for make in (httpx.HTTPTransport, WireTransport):
        with pytest.raises(httpx.ConnectError):
            get(make(), f"http://127.0.0.1:{port}")
    with ScriptedServer([send(OK)]) as server:
        for make in (httpx.HTTPTransport, WireTransport):
            with pytest.raises(httpx.LocalProtocolError):
                get(make(), server.url, x="a\r\nInjected: yes")
        assert server.requests == []


def test_one_connection_carries_every_request_until_it_expires() -> None:
    with ScriptedServer([send(OK)]) as server:
        transport = WireTransport()
        for _ in range(5):
            assert get(transport, server.url).status_code == 200
        assert (server.connections, len(server.requests)) == (1, 5)
        transport.close()
        expiring = WireTransport(keepalive_expiry_s=0.0)
        get(expiring, server.url)
        time.sleep(0.01)
        get(expiring, server.url)
        assert server.connections == 3
        expiring.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending() -> None:
    """Closed by the server between two requests: detected before anything is written, the
    second request goes on a new connection and reaches the server once."""
    with ScriptedServer([close_after(OK, 0.05), send(OK)]) as server:
        transport = WireTransport()
        assert get(transport, server.url).status_code == 200
        time.sleep(0.3)
        assert get(transport, server.url).status_code == 200
        assert (server.connections, len(server.requests)) == (2, 2)
        transport.close()


def bind_request() -> Any:
    from tests.test_pipeline import expiration

    return parse_bind_request(
        {
            "PoolKey": "FC100000001",
            "PhoneNoA": "13812345678",
            "PhoneNoB": "13987654321",
            "Expiration": expiration(),
        }
    )


def client_for(url: str) -> DyplsClient:
    return DyplsClient(Settings(endpoint=url, read_timeout_s=0.5, connect_timeout_s=0.5))


def test_a_request_lost_on_a_kept_alive_connection_is_ambiguous_and_never_resent() -> None:
    """The server takes the second request on the kept-alive connection and closes without an
    answer: the vendor may have applied it. The client says so (AmbiguousVendorError) and never
    sends a second copy on a fresh connection (the nonce proof needs the same signed request,
    re-sent on purpose later)."""
    with ScriptedServer([send(OK), hang_up(), send(OK)]) as server, client_for(server.url) as client:
        assert client.bind_axb(bind_request()).secret_bind_dto is not None
        with pytest.raises(AmbiguousVendorError) as info:
            client.bind_axb(bind_request())
        assert info.value.code == errors.TRANSPORT_ERROR
        assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
        time.sleep(0.2)
        assert (server.connections, len(server.requests)) == (1, 2)


@pytest.mark.parametrize(
    ("steps", "code", "cause"),
    [
        (lambda stop: [silent(stop)], errors.READ_TIMEOUT, httpx.ReadTimeout),
        (lambda _: [reset()], errors.TRANSPORT_ERROR, httpx.ReadError),
        (lambda _: [send(OK[:-10], then_close=True)], errors.TRANSPORT_ERROR, httpx.RemoteProtocolError),
        (lambda _: [send(b"HTTP/9 nonsense\r\n\r\n")], errors.TRANSPORT_ERROR, httpx.RemoteProtocolError),
    ],
    ids=["never answers", "reset", "closed mid-answer", "garbage status line"],
)
def test_what_may_have_reached_the_vendor_is_ambiguous(steps: Any, code: str, cause: type) -> None:
    stop = threading.Event()
    with ScriptedServer(steps(stop)) as server, client_for(server.url) as client:
        with pytest.raises(AmbiguousVendorError) as info:
            client.bind_axb(bind_request())
        stop.set()
        assert info.value.code == code and type(info.value.__cause__) is cause
        assert len(server.requests) == 1


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(ctx)
    return ctx


def test_https_checks_the_certificate_and_the_host_name(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production endpoint is https: httpx's default context (certifi, or SSL_CERT_FILE as
    httpx honours it). An unknown CA or another host's certificate: not sent (ConnectError)."""
    with ScriptedServer([send(OK)], tls=tls_server(ca, "127.0.0.1")) as server:
        with client_for(server.url) as client, pytest.raises(TransportError) as info:
            client.bind_axb(bind_request())
        assert info.value.sent is False and "CERTIFICATE_VERIFY_FAILED" in str(info.value.__cause__)
        assert server.requests == []
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
        with client_for(server.url) as client:
            for _ in range(3):
                assert client.bind_axb(bind_request()).secret_bind_dto is not None
        assert (server.connections, len(server.requests)) == (2, 3)
    with ScriptedServer([send(OK)], tls=tls_server(ca, "vendor.example")) as server:
        with client_for(server.url) as client, pytest.raises(TransportError) as info:
            client.bind_axb(bind_request())
        assert info.value.sent is False and server.requests == []


def test_a_tls_handshake_that_never_completes_is_a_connect_timeout_not_sent(ca: trustme.CA) -> None:
    with ScriptedServer([send(OK)], tls=tls_server(ca, "127.0.0.1"), tls_silent=True) as server:
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        for make in (
            lambda: httpx.HTTPTransport(verify=trusting),
            lambda: WireTransport(ssl_context=trusting),
        ):
            with pytest.raises(httpx.ConnectTimeout):
                get(make(), server.url)
        with client_for(server.url) as client, pytest.raises(TransportError) as info:
            client.bind_axb(bind_request())
        assert info.value.sent is False
        server.stop.set()


def test_read_timeouts_are_the_kernels_and_follow_the_request(ca: trustme.CA) -> None:
    """Once connected, the socket is blocking and SO_RCVTIMEO times reads out (no poll before
    each syscall): a silent server is a ReadTimeout after about the request's read timeout, over
    HTTP and HTTPS alike, and a later request asking for another timeout gets it."""
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    for tls in (None, tls_server(ca, "127.0.0.1")):
        stop = threading.Event()
        with ScriptedServer([send(OK), silent(stop)], tls=tls) as server:
            transport = WireTransport(ssl_context=trusting)
            try:
                assert get(transport, server.url).status_code == 200
                request = httpx.Request(
                    "POST", server.url + "/", extensions={"timeout": {**TIMEOUTS, "read": 0.2}}
                )
                started = time.monotonic()
                with pytest.raises(httpx.ReadTimeout):
                    transport.handle_request(request)
                waited_s = time.monotonic() - started
                assert 0.15 <= waited_s < 2.0, waited_s
                assert server.connections == 1  # the kept-alive connection carried both
            finally:
                stop.set()
                transport.close()
