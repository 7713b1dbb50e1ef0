"""Completion callbacks end to end: real Redis, a real worker, the simulator and a local receiver
(an HTTP server in the test on 127.0.0.1, so AXB_CALLBACK_ALLOW_PRIVATE=true)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trustme
from click.testing import CliRunner
from prometheus_client import REGISTRY

from tests.callback_receiver import Receiver
from tests.conftest import free_port
from tests.pipeline_fixture import ROOT, WorkerProcess, axb_env, own_queue_runtime, wait_until
from tests.test_lifecycle import start_worker
from tests.test_pipeline import expiration, request
from worker import errors, keys
from worker.callbacks import (
    Target,
    bind_document,
    deliver,
    delivery_id,
    header_key,
    operation_document,
    reset_process_state,
    send_pinned,
    signature_header,
    verify,
)
from worker.cli import main
from worker.deadletters import DeadLetters
from worker.producer import enqueue_bind, enqueue_extend, enqueue_unbind, get_op_result, get_result
from worker.runtime import Runtime
from worker.settings import Settings
from worker.store import BindRecord

SECRET = "whsec-test-0123456789"
CALLBACK_ENV = {
    "AXB_CALLBACK_ALLOW_PRIVATE": "true",
    "AXB_CALLBACK_SECRET": SECRET,
    "AXB_CALLBACK_BACKOFF_INITIAL_S": "0.05",
    "AXB_CALLBACK_BACKOFF_MAX_S": "0.2",
    "AXB_CALLBACK_TIMEOUT_S": "2",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def callback_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Callback settings for the test (set before the pipeline fixture builds the runtime)."""
    for k, v in CALLBACK_ENV.items():
        monkeypatch.setenv(k, v)
    reset_process_state()
    yield
    reset_process_state()


@pytest.fixture
def worker(callback_env: None, celery_worker: Any) -> Any:
    """An in-process worker (with its pump) delivering callbacks to 127.0.0.1."""
    return celery_worker


@pytest.fixture
def rt(callback_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The runtime on the test Redis, no worker: the test calls :func:`deliver` itself."""
    yield from own_queue_runtime(monkeypatch)


def deliveries(rt: Runtime, key: str) -> list[BindRecord]:
    """The delivery records of record ``key``'s callbacks."""
    pattern = keys.bind_record(f"{keys.CALLBACK_PREFIX}{key}@*")
    found = [rt.store.get(k.decode().split(":", 2)[2]) for k in rt.redis.scan_iter(match=pattern)]
    return sorted((r for r in found if r is not None), key=lambda r: r.created_at_ms)


def delivered(rt: Runtime, receiver: Receiver, key: str, timeout: float = 15) -> list[Any]:
    """Wait until record ``key``'s (only) callback was delivered; its POSTs."""
    wait_until(lambda: (d := deliveries(rt, key)) and d[-1].status == "succeeded", timeout=timeout)
    return receiver.for_key(key)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- outcomes ----------------------------------------------------------------------------------


def test_a_bind_that_succeeds_posts_its_signed_document_once(
    worker: Any, pipeline: Runtime, receiver: Receiver
) -> None:
    """One POST: the API's document (numbers masked), X-Axb-Key, X-Axb-Delivery, a signature
    that verifies under AXB_CALLBACK_SECRET; counted in axb_callbacks_total."""
    before = metric("axb_callbacks_total", outcome="delivered")
    res = enqueue_bind(request(1), callback_url=receiver.url).result(timeout=15)
    assert res.ok
    posts = delivered(pipeline, receiver, "order-1")
    job = deliveries(pipeline, "order-1")[0]
    assert len(posts) == 1 and job.attempts == 1
    post = posts[0]
    assert post.path == "/hooks/axb" and post.headers["Content-Type"] == "application/json"
    assert post.headers["X-Axb-Key"] == "order-1"
    assert post.headers["X-Axb-Delivery"] == delivery_id(job.key)
    assert post.doc == bind_document(get_result("order-1"), show_numbers=False)  # type: ignore[arg-type]
    assert post.doc["status"] == "succeeded" and post.doc["state"] == "bound"
    assert "13800000001" not in post.body.decode() and "138****0001" in post.body.decode()
    # Stripe's scheme, recomputed by hand: HMAC-SHA256 of "<t>.<raw body>".
    parts = dict(p.split("=", 1) for p in post.headers["X-Axb-Signature"].split(","))
    assert abs(int(parts["t"]) - time.time()) < 30
    mac = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + post.body, hashlib.sha256).hexdigest()
    assert parts["v1"] == mac
    assert verify(SECRET, post.body, post.headers["X-Axb-Signature"], now_s=time.time())
    assert not verify("other-secret", post.body, post.headers["X-Axb-Signature"], now_s=time.time())
    assert not verify(SECRET, post.body + b" ", post.headers["X-Axb-Signature"], now_s=time.time())
    assert metric("axb_callbacks_total", outcome="delivered") == before + 1
    assert metric("axb_callback_delivery_seconds_count") >= 1


def test_a_signature_older_than_the_tolerance_does_not_verify() -> None:
    """A replayed old request fails even with the right secret and body."""
    body = b'{"key":"k"}'
    header = signature_header(SECRET, body, int(time.time()) - 301)
    assert not verify(SECRET, body, header, now_s=time.time())
    assert verify(SECRET, body, header, now_s=time.time(), tolerance_s=400)
    assert not verify(SECRET, body, "t=abc,v1=00", now_s=time.time())


def test_numbers_are_shown_only_when_the_producer_asked_for_them(
    worker: Any, pipeline: Runtime, receiver: Receiver
) -> None:
    """``callback_numbers=True`` (the API's ``numbers`` scope) shows them; the default masks."""
    enqueue_bind(request(2), callback_url=receiver.url, callback_numbers=True).result(timeout=15)
    enqueue_bind(request(3), callback_url=receiver.url).result(timeout=15)
    shown = delivered(pipeline, receiver, "order-2")[0].doc
    masked = delivered(pipeline, receiver, "order-3")[0].doc
    assert shown["request"]["PhoneNoA"] == "13800000002" and shown["request"]["PhoneNoB"] == "13900000002"
    assert masked["request"]["PhoneNoA"] == "138****0003"
    dto = get_result("order-2").dto  # type: ignore[union-attr]
    assert dto is not None and shown["SecretBindDTO"]["SecretNo"] == dto.secret_no
    assert "****" in masked["SecretBindDTO"]["SecretNo"]


def test_a_dead_lettered_bind_calls_back_with_its_code(
    worker: Any, pipeline: Runtime, receiver: Receiver
) -> None:
    """A terminal vendor refusal: status dead_lettered, the vendor code, no SecretBindDTO."""
    res = enqueue_bind(request(4, PoolKey="FC999999999"), callback_url=receiver.url).result(timeout=15)
    assert res.status == "dead_lettered"
    doc = delivered(pipeline, receiver, "order-4")[0].doc
    assert (doc["status"], doc["code"], doc["SecretBindDTO"]) == (
        "dead_lettered",
        "isv.POOLKEY_NOT_EXISTS",
        None,
    )


def test_a_cancelled_bind_and_the_unbind_that_cancelled_it_both_call_back(
    callback_env: None, pipeline: Runtime, receiver: Receiver
) -> None:
    """Bind and unbind queued before any worker runs: the bind reports cancelled, the unbind
    reports outcome cancelled."""
    enqueue_bind(request(5), callback_url=receiver.url)
    unbind = enqueue_unbind("order-5", callback_url=receiver.url)
    with start_worker(pipeline):
        assert unbind.result(timeout=15).outcome == "cancelled"
        bind_doc = delivered(pipeline, receiver, "order-5")[0].doc
        op_doc = delivered(pipeline, receiver, "unbind:order-5")[0].doc
    assert (bind_doc["status"], bind_doc["code"], bind_doc["state"]) == (
        "cancelled",
        errors.CANCELLED,
        "cancelled",
    )
    assert (op_doc["kind"], op_doc["status"], op_doc["outcome"]) == ("unbind", "succeeded", "cancelled")


def test_unbind_and_extend_call_back_with_their_own_documents(
    worker: Any, pipeline: Runtime, receiver: Receiver
) -> None:
    """Each operation with a URL reports itself; the bind (no URL) reports nothing."""
    assert enqueue_bind(request(6)).result(timeout=15).ok
    later = expiration(180)
    ext = enqueue_extend("order-6", later, callback_url=receiver.url, callback_numbers=True).result(
        timeout=15
    )
    assert ext.ok
    ext_doc = delivered(pipeline, receiver, ext.key)[0].doc
    assert ext_doc == operation_document(get_op_result(ext.key), show_numbers=True)  # type: ignore[arg-type]
    assert (ext_doc["kind"], ext_doc["outcome"], ext_doc["Expiration"]) == ("extend", "extended", later)
    assert enqueue_unbind("order-6", callback_url=receiver.url).result(timeout=15).ok
    un_doc = delivered(pipeline, receiver, "unbind:order-6")[0].doc
    assert (un_doc["kind"], un_doc["outcome"]) == ("unbind", "unbound")
    assert "****" in un_doc["SecretNo"]
    assert deliveries(pipeline, "order-6") == []


def test_a_key_that_is_not_ascii_arrives_percent_encoded_in_its_header(
    worker: Any, pipeline: Runtime, receiver: Receiver
) -> None:
    """Any printable key fits in X-Axb-Key (UTF-8, percent-encoded); the body has it as is."""
    key = "行程-42 #1%"
    enqueue_bind(request(9), idempotency_key=key, callback_url=receiver.url).result(timeout=15)
    wait_until(lambda: (d := deliveries(pipeline, key)) and d[0].status == "succeeded")
    (post,) = receiver.for_key(header_key(key))
    assert post.headers["X-Axb-Key"] == "%E8%A1%8C%E7%A8%8B-42%20%231%25"
    assert post.doc["key"] == key
    assert header_key("trip-42") == "trip-42"


# --- retries, the age limit, replay ------------------------------------------------------------


def test_a_receiver_failing_at_first_gets_the_same_delivery_until_it_answers_2xx(
    worker: Any, pipeline: Runtime, receiver: Receiver
) -> None:
    """503, 503, then 200: three POSTs with one X-Axb-Delivery, each signed afresh."""
    receiver.fail_first = 2
    enqueue_bind(request(7), callback_url=receiver.url).result(timeout=15)
    posts = delivered(pipeline, receiver, "order-7")
    job = deliveries(pipeline, "order-7")[0]
    assert len(posts) == 3 and job.attempts == 3
    assert {p.headers["X-Axb-Delivery"] for p in posts} == {delivery_id(job.key)}
    assert all(verify(SECRET, p.body, p.headers["X-Axb-Signature"], now_s=time.time()) for p in posts)
    history = pipeline.store.history(job.key)
    assert [(h["code"], h["http_status"]) for h in history] == [
        (errors.CALLBACK_FAILED, 503),
        (errors.CALLBACK_FAILED, 503),
        ("OK", 200),
    ]


def test_past_the_age_limit_a_delivery_is_dead_lettered_and_a_replay_delivers_it(
    worker: Any, pipeline: Runtime, receiver: Receiver
) -> None:
    """A receiver down for longer than AXB_CALLBACK_MAX_AGE_S: dead letter axb.CALLBACK_FAILED;
    once it is back, ``axb dlq replay`` sends the same delivery again."""
    pipeline.settings.callback_max_age_s = 0.4
    receiver.status = 500
    enqueue_bind(request(8), callback_url=receiver.url).result(timeout=15)
    job = wait_until(
        lambda: (d := deliveries(pipeline, "order-8")) and d[0].status == "dead_lettered" and d[0]
    )
    entries = DeadLetters(pipeline.redis).entries(code=errors.CALLBACK_FAILED)
    assert [(e.key, e.action) for e in entries] == [(job.key, "callback")]
    assert "HTTP 500" in entries[0].message and entries[0].http_status == 500
    failed_posts = len(receiver.for_key("order-8"))
    assert failed_posts >= 1

    receiver.status = 200
    out = CliRunner().invoke(main, ["dlq", "replay", entries[0].id, "--json"], catch_exceptions=False)
    assert json.loads(out.stdout)["replayed"] == [entries[0].id]
    posts = delivered(pipeline, receiver, "order-8")
    assert len(posts) == failed_posts + 1
    assert {p.headers["X-Axb-Delivery"] for p in posts} == {delivery_id(job.key)}
    assert DeadLetters(pipeline.redis).entries(code=errors.CALLBACK_FAILED) == []


def test_deliveries_take_at_most_their_share_of_a_workers_slots(
    worker: Any, pipeline: Runtime, receiver: Receiver
) -> None:
    """With AXB_CALLBACK_CONCURRENCY=1 a slow receiver sees one POST at a time, every callback
    still arrives, and binds without callbacks all finish meanwhile."""
    pipeline.settings.callback_concurrency = 1
    reset_process_state()
    receiver.hold.clear()
    receiver.hold_max_s = 0.3
    handles = [enqueue_bind(request(20 + i), callback_url=receiver.url) for i in range(4)]
    plain = [enqueue_bind(request(40 + i)) for i in range(10)]
    assert all(h.result(timeout=15).ok for h in plain + handles)
    for i in range(4):
        assert len(delivered(pipeline, receiver, f"order-{20 + i}", timeout=20)) == 1
    assert receiver.max_in_flight == 1


# --- the SSRF guard at delivery time, the secret, logs --------------------------------------------


def finished_with_callback(rt: Runtime, i: int, url: str, **kw: Any) -> str:
    """A bind with a callback, made terminal by hand (no worker); its delivery's key."""
    enqueue_bind(request(i), callback_url=url, **kw)
    assert rt.store.dead_letter(f"order-{i}", code="isv.MOBILE_NUMBER_ILLEGAL", message="refused") is not None
    (job,) = deliveries(rt, f"order-{i}")
    return job.key


def test_a_url_that_now_points_inside_is_refused_at_delivery_time(rt: Runtime, receiver: Receiver) -> None:
    """The URL was accepted, then private targets were forbidden (as when DNS changes): the
    delivery is refused, named CallbackUrl and axb.CALLBACK_URL_REFUSED, and retried later."""
    job = finished_with_callback(rt, 90, receiver.url)
    rt.settings.callback_allow_private = False
    assert deliver(rt, job, "token-1") == "retrying"
    rec = rt.store.get(job)
    assert rec is not None and rec.code == errors.CALLBACK_URL_REFUSED
    assert rec.message.startswith("CallbackUrl: ") and "loopback" in rec.message
    assert receiver.received == []  # deliver() is synchronous: nothing went out


def test_nothing_is_sent_unsigned(rt: Runtime, receiver: Receiver) -> None:
    """Without AXB_CALLBACK_SECRET the delivery waits (retrying) instead of posting unsigned."""
    job = finished_with_callback(rt, 91, receiver.url)
    rt.settings.callback_secret = type(rt.settings.callback_secret)("")
    assert deliver(rt, job, "token-1") == "retrying"
    rec = rt.store.get(job)
    assert rec is not None and "AXB_CALLBACK_SECRET is not set" in rec.message
    assert receiver.received == []


def test_redirects_are_not_followed(rt: Runtime, receiver: Receiver) -> None:
    """A 302 is a failed delivery (it could point anywhere)."""
    receiver.status = 302
    job = finished_with_callback(rt, 92, receiver.url)
    assert deliver(rt, job, "token-1") == "retrying"
    rec = rt.store.get(job)
    assert rec is not None and rec.http_status == 302 and "redirects are not followed" in rec.message
    assert len(receiver.received) == 1


def test_logs_mask_numbers_and_never_show_the_secret(
    rt: Runtime, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed then delivered callback with numbers shown to the receiver: the worker's own
    log lines carry neither a number (even in the URL's path) nor the secret."""
    caplog.set_level(logging.DEBUG, logger="axb")
    receiver.fail_first = 1
    job = finished_with_callback(rt, 93, receiver.url + "/13800000093", callback_numbers=True)
    assert deliver(rt, job, "token-1") == "retrying"
    assert wait_until(lambda: deliver(rt, job, "token-2") == "succeeded", timeout=10)
    assert "13800000093" in receiver.received[-1].body.decode()  # the receiver asked for them
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("axb"))
    assert "callback" in text and "delivered" in text
    assert "13800000093" not in text and "13900000093" not in text and SECRET not in text
    assert SECRET not in repr(rt.settings)


def tls_receiver(ca: Any, hostname: str) -> Receiver:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(hostname).configure_cert(ctx)
    return Receiver(tls=ctx)


def test_https_goes_to_the_checked_address_and_verifies_the_certificate_for_the_urls_host(
    rt: Runtime, tmp_path: Any
) -> None:
    """https://localhost:PORT/ is posted to 127.0.0.1 (the checked address) with SNI and the
    certificate check on ``localhost``; a certificate for another name is refused."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    rt.settings.callback_ca_file = str(tmp_path / "ca.pem")
    reset_process_state()
    good, wrong = tls_receiver(ca, "localhost"), tls_receiver(ca, "elsewhere.example")
    try:
        job = finished_with_callback(rt, 97, good.url)
        assert deliver(rt, job, "token-1") == "succeeded"
        (post,) = good.received
        assert post.headers["Host"] == f"localhost:{good.port}" and post.headers["X-Axb-Key"] == "order-97"
        assert verify(SECRET, post.body, post.headers["X-Axb-Signature"], now_s=time.time())

        job = finished_with_callback(rt, 98, wrong.url)
        assert deliver(rt, job, "token-2") == "retrying"
        rec = rt.store.get(job)
        assert rec is not None and "CERTIFICATE_VERIFY_FAILED" in rec.message
        assert wrong.received == []
    finally:
        good.close()
        wrong.close()


def test_a_name_with_several_addresses_is_tried_address_by_address(receiver: Receiver) -> None:
    """The first checked address refuses the connection: the next one gets the POST."""
    target = Target(
        url=receiver.url,
        scheme="http",
        host="hooks.test",
        port=receiver.port,
        addresses=("127.0.0.3", "127.0.0.1"),
    )
    with httpx.Client() as client:
        response = send_pinned(client, target, b"{}", {"X-Axb-Key": "k"})
    assert response.status_code == 200
    (post,) = receiver.received
    assert post.headers["Host"] == f"hooks.test:{receiver.port}"


# --- crash: a worker killed between the terminal write and the POST ------------------------------


def test_a_worker_killed_before_the_post_still_delivers(
    callback_env: None, pipeline: Runtime, receiver: Receiver, tmp_path: Any
) -> None:
    """Worker A binds, writes the outcome and is SIGKILLed as it is about to POST; worker B,
    started afterwards, delivers the callback (the delivery was scheduled with the outcome)."""
    env = {**axb_env(), "AXB_WATCHDOG_S": "1", "AXB_CALLBACK_TIMEOUT_S": "1"}
    a = WorkerProcess(
        {**env, "AXB_FAULT_KILL_ON_CALLBACK": "order-80"}, "-c", "4", log_path=tmp_path / "a.log"
    )
    a.start()
    try:
        assert enqueue_bind(request(80), callback_url=receiver.url).result(timeout=30).ok
        assert a.proc is not None and a.proc.wait(30) == -signal.SIGKILL
    finally:
        a.stop()
    assert receiver.for_key("order-80") == []  # A was the only worker, and died before the POST
    b = WorkerProcess(env, "-c", "4", log_path=tmp_path / "b.log").start()
    try:
        posts = delivered(pipeline, receiver, "order-80", timeout=40)
    finally:
        b.stop()
    assert len(posts) == 1 and posts[0].doc["status"] == "succeeded"


# --- the receiver example in the README ----------------------------------------------------------


def test_the_example_receiver_accepts_a_real_callback_and_refuses_forgeries(
    worker: Any, pipeline: Runtime
) -> None:
    """examples/callback_receiver.py, run as documented: a delivery from the worker passes; a
    wrong signature or a timestamp over 5 minutes old gets 400."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "callback_receiver.py"), str(port)],
        env={**os.environ, "AXB_CALLBACK_SECRET": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until(lambda: _answers(url), timeout=10)
        enqueue_bind(request(95), callback_url=url).result(timeout=15)
        wait_until(lambda: (d := deliveries(pipeline, "order-95")) and d[0].status == "succeeded", timeout=15)
        body = b'{"key":"forged"}'
        stale = signature_header(SECRET, body, int(time.time()) - 301)
        forged = signature_header("not-the-secret", body, int(time.time()))
        good = signature_header(SECRET, body, int(time.time()))
        hdrs = {"X-Axb-Delivery": "d-1"}
        assert httpx.post(url, content=body, headers={**hdrs, "X-Axb-Signature": stale}).status_code == 400
        assert httpx.post(url, content=body, headers={**hdrs, "X-Axb-Signature": forged}).status_code == 400
        assert httpx.post(url, content=body, headers={**hdrs, "X-Axb-Signature": good}).status_code == 204
        assert httpx.post(url, content=body, headers={**hdrs, "X-Axb-Signature": good}).status_code == 204
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    handled = [json.loads(line) for line in out.decode().splitlines()]
    assert [d["key"] for d in handled] == ["order-95", "forged"]  # the repeated delivery once


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=0.5)
    except httpx.HTTPError:
        return False
    return True


def test_a_delivery_whose_record_was_replayed_since_is_superseded_not_sent(
    rt: Runtime, receiver: Receiver
) -> None:
    """The dead-lettered bind was replayed before its callback went out: the stale outcome is
    not sent (the replay's own outcome will call back)."""
    job = finished_with_callback(rt, 94, receiver.url)
    (entry,) = DeadLetters(rt.redis).entries(code="isv.MOBILE_NUMBER_ILLEGAL")
    assert DeadLetters(rt.redis).replay([entry], lambda _keys: None, rate_qps=0).replayed == [entry.id]
    assert get_result("order-94").status == "pending"  # type: ignore[union-attr]
    assert deliver(rt, job, "token-1") == "superseded"
    rec = rt.store.get(job)
    assert rec is not None and rec.status == "succeeded" and rec.result == {"superseded": True}
    assert receiver.received == []


def test_the_readme_shows_the_example_receiver_as_committed() -> None:
    """The receiver in the README is the tested file, byte for byte."""
    example = (ROOT / "examples" / "callback_receiver.py").read_text()
    assert f"```python\n{example}```" in (ROOT / "README.md").read_text()


SENTRY_SCRIPT = """
import sys
import sentry_sdk
from worker.observability import init_sentry
from worker.settings import Settings

settings = Settings(sentry_dsn=sys.argv[1], callback_secret=sys.argv[2])
assert init_sentry(settings)


def sign() -> None:
    secret = settings.callback_secret.get_secret_value()
    raise RuntimeError("could not sign with " + secret)


try:
    sign()
except RuntimeError:
    sentry_sdk.capture_exception()
sentry_sdk.flush(5)
"""


def test_sentry_events_never_carry_the_callback_secret() -> None:
    """An exception whose message and local variables hold the secret reaches Sentry scrubbed."""
    from tests.sentry_capture import SentryCapture

    capture = SentryCapture()
    try:
        subprocess.run(
            [sys.executable, "-c", SENTRY_SCRIPT, capture.dsn, SECRET],
            env=axb_env(),
            cwd=ROOT,
            check=True,
            timeout=60,
            capture_output=True,
        )
        wait_until(lambda: capture.events, timeout=10)
    finally:
        capture.close()
    text = capture.all_text()
    assert "could not sign with [secret]" in text
    assert SECRET not in text
