"""The simulator's hand-written RPC endpoint answers exactly what its Starlette route answered,
and keeps its faults on the server stack it runs on (httptools, uvloop).

The oracle is the Starlette route as it was before the endpoint was written by hand
(``tests/simulator_rpc_oracle.py``): both apps get the same requests, each with its own simulator
of the same configuration, and must send the same ASGI messages (status, headers in order,
body) and keep the same ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message

from tests.simulator_fixture import TEST_ACCESS_KEY_ID as AK
from tests.simulator_fixture import TEST_ACCESS_KEY_SECRET as SECRET
from tests.simulator_fixture import RunningSimulator, fixture_config
from tests.simulator_rpc_oracle import oracle_app
from tests.waiting import http_serving, wait_until
from worker import vendor
from worker.simulator import Simulator, create_app
from worker.simulator.app import SERVER_OPTIONS
from worker.simulator.gateway import TIMESTAMP_FIELDS, TIMESTAMP_FORMAT
from worker.simulator.rpc import decode_pairs
from worker.simulator.validation import CST, EXPIRATION_FIELDS, EXPIRATION_FORMAT, parse_datetime
from worker.vendor import sign_request

ROOT = Path(__file__).resolve().parent.parent
HOST = "simulator.test"
POOL = "FC100000001"
FIXED_NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)

# --- requests, and running them through an app in process ---------------------------------------


@dataclass
class Case:
    label: str
    method: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes] = field(default_factory=lambda: [b""])
    faults: dict[str, Any] = field(default_factory=dict)
    path: str = "/"


_seq = itertools.count()


def bind_params(**over: str) -> dict[str, str]:
    i = next(_seq)
    expires = (FIXED_NOW + timedelta(hours=9)).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S")
    params = {
        "PoolKey": POOL,
        "PhoneNoA": f"1380000{i:04d}",
        "PhoneNoB": f"1390000{i:04d}",
        "Expiration": expires,
        "OutId": f"rpc-{i}",
    }
    params.update(over)
    return params


def signed_case(label: str, action: str, params: dict[str, str], **kw: Any) -> Case:
    faults = kw.pop("faults", {})
    secret = kw.pop("secret", SECRET)
    signed = sign_request(action, params, endpoint=f"http://{HOST}", access_key_id=AK, secret=secret, **kw)
    parts = urlsplit(signed.url)
    headers = [(k.encode(), v.encode()) for k, v in signed.headers.items()]
    return Case(label, signed.method, parts.query.encode(), headers, faults=faults)


def v3_form_case(label: str, form: dict[str, str], chunks: int = 1) -> Case:
    body = urlencode(form).encode()
    headers = {
        "host": HOST,
        "x-acs-action": "BindAxb",
        "x-acs-version": vendor.API_VERSION,
        "x-acs-date": vendor.utc_timestamp(),
        "x-acs-signature-nonce": f"form-{next(_seq)}",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
    }
    canonical, names = vendor.v3_canonical_request("POST", "/", {}, headers, headers["x-acs-content-sha256"])
    signature = vendor.v3_signature(vendor.v3_string_to_sign(canonical), SECRET)
    headers["authorization"] = (
        f"{vendor.V3_ALGORITHM} Credential={AK},SignedHeaders={names},Signature={signature}"
    )
    step = -(-len(body) // chunks)
    parts = [body[i : i + step] for i in range(0, len(body), step)]
    return Case(label, "POST", b"", [(k.encode(), v.encode()) for k, v in headers.items()], parts)


def cases() -> list[Case]:
    ok = signed_case("v3 bind", "BindAxb", bind_params())
    replayed = Case("v3 replay (SignatureNonceUsed)", ok.method, ok.query, ok.headers)
    tampered = signed_case("v3 tampered", "BindAxb", bind_params())
    tampered.query = tampered.query.replace(b"OutId=rpc", b"OutId=xpc")
    v1_get = signed_case("v1 GET", "BindAxb", bind_params(), scheme="v1", method="GET")
    v1_form = signed_case("v1 POST", "BindAxb", bind_params(), scheme="v1")
    v1_form.headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    v1_form.chunks, v1_form.query = [v1_form.query], b""
    doubled = signed_case("repeated header", "BindAxb", bind_params())
    doubled.headers.append((b"x-acs-action", b"BindAxb"))
    odd_date = signed_case("odd timestamp shape", "BindAxb", bind_params())
    odd_date.headers = [(k, b"2030-6-1T12:00:00Z" if k == b"x-acs-date" else v) for k, v in odd_date.headers]
    bad_date = signed_case("bad timestamp", "BindAxb", bind_params())
    bad_date.headers = [
        (k, b"2030-02-30T12:00:00Z" if k == b"x-acs-date" else v) for k, v in bad_date.headers
    ]
    junk = Case(
        "junk query",
        "POST",
        b"a=&b&&c=1+2&%FF=%zz&Action=BindAxb&d=%E4%BD%A0%20x&a=2",
        [(b"host", HOST.encode()), (b"content-type", b"text/plain")],
        [b"x", b"y"],
    )
    return [
        ok,
        replayed,
        tampered,
        signed_case("wrong secret", "BindAxb", bind_params(), secret="nope"),
        signed_case("bad phone", "BindAxb", bind_params(PhoneNoA="+8613800000000")),
        odd_date,
        bad_date,
        v1_get,
        Case("v1 HEAD", "HEAD", v1_get.query.replace(b"Signature=", b"Signature=x"), v1_get.headers),
        v1_form,
        v3_form_case("v3 form body in chunks", bind_params(), chunks=3),
        doubled,
        junk,
        Case("no headers at all", "GET", b"", []),
        signed_case("unknown action", "BindAxbX", bind_params()),
        signed_case("query", "QuerySubscriptionDetail", {"PoolKey": POOL, "PhoneNoX": "1", "SubsId": "2"}),
        signed_case("html 502", "BindAxb", bind_params(), faults={"html_502_rate": 1.0}),
        signed_case("5xx", "BindAxb", bind_params(), faults={"http_5xx_rate": 1.0}),
        signed_case("truncated", "BindAxb", bind_params(), faults={"truncated_json_rate": 1.0}),
        signed_case("missing dto", "BindAxb", bind_params(), faults={"missing_dto_rate": 1.0}),
        signed_case("slow", "BindAxb", bind_params(), faults={"slow_rate": 1.0, "slow_response_ms": 1}),
        signed_case("latency", "BindAxb", bind_params(), faults={"latency_ms": 2}),
        signed_case(
            "forced gateway code", "BindAxb", bind_params(), faults={"force_code": "Throttling.User"}
        ),
        signed_case(
            "throttled, gateway style",
            "BindAxb",
            bind_params(),
            faults={"qps_limit": 0, "throttle_style": "gateway", "throttle_retry_after_ms": 250},
        ),
        signed_case("throttled, flow limit", "BindAxb", bind_params(), faults={"qps_limit": 0}),
        signed_case("reset", "BindAxb", bind_params(), faults={"reset_rate": 1.0}),
        Case("PUT is not allowed", "PUT", b"", [(b"host", HOST.encode())]),
    ]


async def exchange(app: Any, case: Case) -> list[Message] | str:
    """The messages ``app`` sends for ``case`` (or the name of the exception it raised)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": case.method,
        "scheme": "http",
        "path": case.path,
        "raw_path": case.path.encode(),
        "query_string": case.query,
        "root_path": "",
        "headers": list(case.headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8088),
        "state": {},
    }
    inbox = [
        {"type": "http.request", "body": chunk, "more_body": i < len(case.chunks) - 1}
        for i, chunk in enumerate(case.chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        if inbox:
            return inbox.pop(0)
        await asyncio.sleep(3600)  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except Exception as exc:
        return type(exc).__name__
    return sent


@pytest.fixture
def fixed_request_ids(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``new_request_id`` answers the last id pushed here, so both apps can use the same ones."""
    ids = ["00000000-0000-4000-8000-000000000000"]
    monkeypatch.setattr("worker.simulator.state.new_request_id", lambda: ids[-1])
    return ids


def test_the_rpc_endpoint_sends_what_the_starlette_route_sent(fixed_request_ids: list[str]) -> None:
    config = fixture_config(clock=lambda: FIXED_NOW, timestamp_tolerance_s=10**10)
    new = create_app(config)
    old_sim = Simulator(config)
    old = oracle_app(old_sim)
    new_sim: Simulator = new.state.simulator

    async def run() -> list[tuple[str, Any, Any]]:
        seen = []
        for n, case in enumerate(cases()):
            fixed_request_ids.append(f"{n:08X}-0000-4000-8000-000000000000")
            for sim in (old_sim, new_sim):
                sim.clear_faults()
                sim.set_faults(**case.faults)
            seen.append((case.label, await exchange(old, case), await exchange(new, case)))
        return seen

    results = asyncio.run(run())
    for label, before, after in results:
        assert after == before, label
    outcomes = {
        label: before if isinstance(before, str) else before[0]["status"] for label, before, _ in results
    }
    # The cases reach what they are named after (so the comparison covers them).
    assert outcomes["v3 bind"] == 200 and outcomes["v3 replay (SignatureNonceUsed)"] == 400
    assert outcomes["html 502"] == 502 and outcomes["PUT is not allowed"] == 405
    assert outcomes["reset"] == "SimulatedConnectionReset"
    assert outcomes["v3 form body in chunks"] == 200 and outcomes["v1 POST"] == 200
    assert b"InvalidTimeStamp.Format" in results[[r[0] for r in results].index("bad timestamp")][1][1]["body"]

    def ledger(sim: Simulator) -> list[dict[str, Any]]:
        return [{k: v for k, v in call.items() if k != "time"} for call in sim.calls()]

    assert ledger(new_sim) == ledger(old_sim) and len(ledger(new_sim)) == len(results) - 1
    assert new_sim.bindings() == old_sim.bindings()


# --- the hand-written parsers against the library functions they replace ------------------------

_QUERY_TEXT = st.text(alphabet=st.sampled_from("ab=&+%2F0E4BDA0zZ ~é你\x00"), max_size=40)


@settings(max_examples=400, deadline=None)
@given(_QUERY_TEXT)
def test_decode_pairs_is_parse_qsl_as_a_dict(raw: str) -> None:
    assert decode_pairs(raw) == dict(parse_qsl(raw, keep_blank_values=True, encoding="utf-8"))


_FIELD = st.one_of(
    st.integers(0, 99).map(lambda n: f"{n:02d}"), st.sampled_from(["1", "123", "٣٣", "+1", " 1"])
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.integers(0, 9999).map(lambda n: f"{n:04d}"), st.sampled_from(["02024", "٢٠٢٤"])),
    _FIELD,
    _FIELD,
    _FIELD,
    _FIELD,
    _FIELD,
    st.sampled_from(["T", " ", "  ", "t"]),
    st.sampled_from(["Z", "", "Z\n", "z"]),
)
def test_parse_datetime_is_strptime(
    year: str, month: str, day: str, hour: str, minute: str, second: str, sep: str, end: str
) -> None:
    value = f"{year}-{month}-{day}{sep}{hour}:{minute}:{second}{end}"
    for fmt, fields, tz in (
        (TIMESTAMP_FORMAT, TIMESTAMP_FIELDS, UTC),
        (EXPIRATION_FORMAT, EXPIRATION_FIELDS, CST),
    ):
        try:
            expected: datetime | str = datetime.strptime(value, fmt).replace(tzinfo=tz)
        except ValueError:
            expected = "ValueError"
        try:
            got: datetime | str = parse_datetime(value, fmt, fields, tz)
        except ValueError:
            got = "ValueError"
        assert got == expected, (value, fmt)


# --- faults on the real server stack --------------------------------------------------------------


def raw_request(url: str, params: dict[str, str]) -> bytes:
    signed = sign_request("BindAxb", params, endpoint=url, access_key_id=AK, secret=SECRET)
    parts = urlsplit(signed.url)
    head = "".join(f"{k}: {v}\r\n" for k, v in signed.headers.items())
    return f"POST {parts.path}?{parts.query} HTTP/1.1\r\n{head}content-length: 0\r\n\r\n".encode()


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; ConnectionResetError on an RST."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@contextlib.contextmanager
def connection(url: str) -> Iterator[socket.socket]:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        yield sock


def test_the_server_stack_is_httptools_on_uvloop(simulator_server: RunningSimulator) -> None:
    """What `axb simulator` runs (serve) is what the test fixture runs."""
    assert SERVER_OPTIONS["http"] == "httptools" and SERVER_OPTIONS["loop"] == "uvloop"
    server = simulator_server._server
    assert server is not None
    assert server.config.http_protocol_class.__name__ == "HttpToolsProtocol"


def test_a_reset_fault_sends_an_rst_after_applying_the_call(simulator: RunningSimulator) -> None:
    simulator.set_faults(reset_rate=1.0)
    params = bind_params()
    with connection(simulator.url) as sock:
        sock.sendall(raw_request(simulator.url, params))
        with pytest.raises(ConnectionResetError):
            read_until_closed(sock)
    assert len(simulator.sim.bindings_for(params["OutId"])) == 1
    simulator.set_faults(reset_rate=0.0)
    with connection(simulator.url) as sock:  # and the server goes on answering
        sock.sendall(raw_request(simulator.url, bind_params()))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_the_simulator_process_resets_and_delays_on_its_server_stack(tmp_path: Path) -> None:
    """`axb simulator` itself (serve: httptools, uvloop): a reset is an RST, latency delays."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "simulator", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "AXB_ACCESS_KEY_ID": AK,
            "AXB_ACCESS_KEY_SECRET": SECRET,
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=5) as http:
            wait_until(lambda: http_serving(http, f"{url}/_simulator/faults", proc), timeout=15)
            expires = (datetime.now(UTC) + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
            http.post(f"{url}/_simulator/faults", json={"reset_rate": 1.0}).raise_for_status()
            with connection(url) as sock:
                sock.sendall(raw_request(url, bind_params(Expiration=expires)))
                with pytest.raises(ConnectionResetError):
                    read_until_closed(sock)
            http.post(f"{url}/_simulator/faults", json={"clear": True, "latency_ms": 300}).raise_for_status()
            with connection(url) as sock:
                started = time.monotonic()
                sock.sendall(raw_request(url, bind_params(Expiration=expires)))
                answer = sock.recv(65536)
                assert time.monotonic() - started >= 0.3 and answer.startswith(b"HTTP/1.1 200 OK\r\n")
            ledger = http.get(f"{url}/_simulator/ledger").json()
            assert [(c["code"], c["fault"]) for c in ledger["calls"]] == [("OK", "reset"), ("OK", None)]
    finally:
        proc.terminate()
        proc.wait(10)
