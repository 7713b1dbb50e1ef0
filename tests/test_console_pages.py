"""The console's pages over plain HTTP, for what the browser tests do not cover: the overview's
figures (queue depth, delayed and in-flight keys, the rate against AXB_RATE_LIMIT_QPS, holds
with reason and end time), the dead-letter filters (pool, age, text in the key), and on every
page a CSRF token in each state-changing form and the strict CSP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api_fixture import ApiProcess, api_pipeline_fixture, api_server_fixture, make_token
from tests.conftest import TEST_AK
from tests.console_helpers import csrf_of, login, make_dead_letter
from tests.test_pipeline import request
from tests.waiting import wait_until
from worker import errors, keys
from worker.console.web import when
from worker.producer import enqueue_bind
from worker.runtime import Runtime

api_server = api_server_fixture()
pipeline = api_pipeline_fixture()


@pytest.fixture
def client(api_server: ApiProcess, redis_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=20) as c:
        login(c, make_token(redis_url, "oncall", "operate"))
        yield c


def figure(html: str, element_id: str) -> int:
    m = re.search(rf'id="{element_id}">(\d+)<', html)
    assert m, f"no #{element_id} on the page"
    return int(m.group(1))


def test_the_overview_shows_queue_depth_in_flight_keys_the_rate_and_holds_with_reason_and_end(
    client: httpx.Client, pipeline: Runtime
) -> None:
    """No worker: three binds wait on the queue. Then an account hold (until when) and the
    vendor hold (until a probe gets an answer), then the limiter slowed after a throttle."""
    for i in range(3):
        enqueue_bind(request(i))
    live = client.get("/console/live").text
    assert figure(live, "queue-depth") == 3 and figure(live, "in-flight") == 3
    assert "limit 1000.0/s of AXB_RATE_LIMIT_QPS 1000" in live and "slowed" not in live
    assert "No hold: calls flow." in live

    hold = pipeline.holds.hold_account(TEST_AK, "isv.ACCOUNT_ABNORMAL", "account abnormal", 600)
    live = client.get("/console/live").text
    assert "account refused" in live and "isv.ACCOUNT_ABNORMAL" in live
    assert f"since {when(hold.since_ms)}, ends {when(hold.until_ms)}" in live
    pipeline.holds.open_vendor(errors.VENDOR_UNREACHABLE, errors.TRANSPORT_ERROR, "connection refused")
    live = client.get("/console/live").text
    assert "vendor unreachable" in live and "ends when a probe gets an answer" in live
    pipeline.redis.delete(keys.account_hold(TEST_AK))
    pipeline.holds.close_vendor()

    pipeline.limiter.throttled(pipeline.limits("FC100000001")[:1])
    factor = pipeline.limiter.factor(f"account:{TEST_AK}")
    assert factor < 1
    live = client.get("/console/live").text
    m = re.search(r"limit ([\d.]+)/s of AXB_RATE_LIMIT_QPS 1000 \(slowed to (\d+)% after throttling\)", live)
    assert m, live
    assert abs(float(m.group(1)) - 1000 * factor) < 50 and abs(int(m.group(2)) - factor * 100) <= 5
    assert "No hold: calls flow." in live


def test_the_overview_shows_a_key_delayed_by_a_throttled_answer_of_a_real_worker(
    client: httpx.Client, celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """Throttling.User with x-acs-retry-after 2 min: the worker slows the account down and puts
    the key on the delay queue: 1 delayed, 1 in flight, the limit below AXB_RATE_LIMIT_QPS."""
    simulator.set_faults(force_code="Throttling.User", force_count=1, throttle_retry_after_ms=120_000)
    handle = enqueue_bind(request(7))
    wait_until(lambda: (s := handle.status()) is not None and s.attempts >= 1, timeout=15)

    def delayed() -> str | None:
        live = client.get("/console/live").text
        return live if "1 delayed" in live else None

    live = wait_until(delayed, timeout=15)
    assert figure(live, "in-flight") == 1 and figure(live, "queue-depth") == 0
    assert "after throttling" in live


def test_dead_letters_filter_by_pool_age_and_text_in_the_key(client: httpx.Client, pipeline: Runtime) -> None:
    three_hours_ago_ms = int(time.time() * 1000) - 3 * 3600 * 1000
    stale = f"{three_hours_ago_ms}-0"  # an entry's id is when it was dead-lettered
    pipeline.redis.xadd(
        keys.DEAD_LETTERS, {"key": "trip-north-0", "code": "isp.SYSTEM_ERROR", "request": ""}, id=stale
    )
    north = make_dead_letter(pipeline, "trip-north-1", 1, "isp.SYSTEM_ERROR")
    south = make_dead_letter(pipeline, "trip-south-2", 2, "isp.SYSTEM_ERROR", pool="FC100000002")
    other = make_dead_letter(pipeline, "trip-north-3", 3, "isv.POOLKEY_NOT_EXISTS")

    def ids(**params: str) -> set[str]:
        html = client.get("/console/dlq", params=params).text
        return set(re.findall(r'name="ids" value="([^"]+)"', html))

    assert ids() == {stale, north, south, other}
    assert ids(pool="FC100000002") == {south} and ids(pool="FC100000001") == {north, other}
    assert ids(text="north") == {stale, north, other} and ids(text="south-2") == {south}
    assert ids(code="isp.SYSTEM_ERROR", text="north") == {stale, north}
    assert ids(since="2h") == {north, south, other} and ids(since="4h") == {stale, north, south, other}
    assert ids(since="2h", text="north", code="isp.SYSTEM_ERROR") == {north}
    bad = client.get("/console/dlq", params={"since": "yesterday-ish"})
    assert bad.status_code == 200 and 'class="error"' in bad.text


POST_FORM = re.compile(r'<form\b[^>]*method="post"[^>]*>(.*?)</form>', re.S)


def test_every_state_changing_form_on_every_page_carries_the_csrf_token_and_every_page_the_csp(
    client: httpx.Client, pipeline: Runtime
) -> None:
    entry = make_dead_letter(pipeline, "k-1", 1, "isp.SYSTEM_ERROR")
    ambiguous = make_dead_letter(pipeline, "k-2", 2, errors.AMBIGUOUS_OUTCOME)
    csrf = csrf_of(client.get("/console/").text)
    pages = {
        "/console/": client.get("/console/"),
        "/console/dlq": client.get("/console/dlq"),
        "entry": client.get(f"/console/dlq/{entry}"),
        "ambiguous entry": client.get(f"/console/dlq/{ambiguous}"),
        "/console/bind": client.get("/console/bind", params={"key": "k-1"}),
        "/console/orphans": client.get("/console/orphans"),
        "/console/audit": client.get("/console/audit"),
    }
    for op in ("replay", "purge", "rebind", "resolve"):
        pages[f"confirm {op}"] = client.post(
            "/console/dlq/action", data={"op": op, "ids": [entry, ambiguous], "csrf": csrf, "note": "n"}
        )
    for name, r in pages.items():
        assert r.status_code == 200, name
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp, name
        assert not re.search(r"<script(?![^>]*\bsrc=)", r.text) and " style=" not in r.text, name
        forms = POST_FORM.findall(r.text)
        # Log out on every page; and the actions of the dead-letter pages and confirmations.
        has_actions = "dlq" in name or "entry" in name or "confirm" in name
        assert len(forms) >= (2 if has_actions else 1), name
        for body in forms:
            assert f'name="csrf" value="{csrf}"' in body, (name, body[:200])
    login_page = httpx.get(f"{client.base_url}/console/login")
    assert re.search(r'name="csrf" value="[^"]{20,}"', login_page.text)
