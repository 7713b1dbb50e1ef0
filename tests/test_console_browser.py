"""The on-call console in a real headless browser (Debian's chromium driven by Playwright),
against a real ``axb api`` process, a real Celery worker and the Dypls simulator.

One browser per module (start-up is the slow part). With ``AXB_SCREENSHOTS=1`` the tests write
docs/console-overview.png, docs/console-dead-letter.png and docs/console-phone.png.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.api_fixture import ApiProcess, api_pipeline_fixture, api_server_fixture, make_token
from tests.console_helpers import make_dead_letter
from tests.pipeline_fixture import ROOT
from tests.test_pipeline import request
from tests.waiting import wait_until
from worker.orphans import list_possible_orphans
from worker.producer import enqueue_binds, get_result
from worker.runtime import Runtime

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("AXB_SCREENSHOTS") == "1"
DOCS = ROOT / "docs"
# Every number the tests bind, raw: none may be on a page.
RAW = [f"1380000{i:04d}" for i in range(60, 70)] + [f"1390000{i:04d}" for i in range(60, 70)]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"
)
api_server = api_server_fixture()
pipeline = api_pipeline_fixture()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Chromium for the module, on a new empty profile (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any, api_server: ApiProcess, redis_url: str) -> Iterator[Any]:
    browser.clear_cookies()
    p = browser.new_page()
    p.set_default_timeout(15_000)
    csp_errors: list[str] = []
    p.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    p.base = api_server.url  # type: ignore[attr-defined]
    yield p
    p.close()
    assert csp_errors == [], csp_errors


def log_in(page: Any, redis_url: str, scopes: str = "operate") -> None:
    token = make_token(redis_url, "alice-oncall", scopes)
    page.goto(f"{page.base}/console/")
    assert page.url.endswith("/console/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{page.base}/console/")


def no_raw_number(page: Any) -> None:
    html = page.content()
    assert not [n for n in RAW if n in html]


def dead_letters_from_a_real_worker(simulator: Any) -> list[str]:
    """Four binds that succeed, then one account refusal and one unknown pool: two dead letters,
    made by the worker."""
    for h in enqueue_binds([request(i) for i in range(64, 68)]).handles:
        assert h.result(timeout=15).status == "succeeded"
    simulator.set_faults(force_code="isv.ACCOUNT_ABNORMAL", force_count=1)
    [refused] = enqueue_binds([request(60)]).handles
    assert refused.result(timeout=15).status == "dead_lettered"
    [bad_pool] = enqueue_binds([request(61, PoolKey="FC999999999")]).handles
    assert bad_pool.result(timeout=15).status == "dead_lettered"
    return [refused.key, bad_pool.key]


def test_on_call_sees_a_real_dead_letter_filters_opens_replays_and_purges_it_and_audits_both(
    page: Any, redis_url: str, celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    refused_key, bad_pool_key = dead_letters_from_a_real_worker(simulator)
    log_in(page, redis_url)

    # The overview: a chart with lines, the dead letters counted, live.
    assert page.locator("svg polyline.s-dead").count() >= 1 and page.locator("svg polyline.s-ok").count() >= 1
    assert page.locator("#dead-letters").inner_text() == "2"
    assert "No hold: calls flow." in page.content()
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "console-overview.png"), full_page=True)
    simulator.set_faults(force_code="isv.ACCOUNT_ABNORMAL", force_count=1)
    [third] = enqueue_binds([request(62)]).handles
    third.result(timeout=15)
    # No reload: console.js swaps the live part in (the CSP would refuse any inline script).
    expect(page.locator("#dead-letters")).to_have_text("3", timeout=15_000)

    # Filter by code: only the account refusals.
    page.click("nav >> text=Dead letters")
    page.select_option("select[name=code]", "isv.ACCOUNT_ABNORMAL")
    page.click("text=Filter")
    rows = page.locator("table.entries tbody tr")
    assert rows.count() == 2
    assert "isv.POOLKEY_NOT_EXISTS" not in page.locator("table.entries").inner_text()
    no_raw_number(page)

    # Open the first refusal: the request masked, its RequestId and attempt history.
    page.locator("table.entries tbody tr", has_text=refused_key).locator("a").first.click()
    assert page.locator("h2", has_text="Attempts").count() == 1
    assert "138****0060" in page.locator("pre.request").inner_text()
    history = page.locator("table").last.inner_text()
    assert "isv.ACCOUNT_ABNORMAL" in history
    no_raw_number(page)
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "console-dead-letter.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(DOCS / "console-phone.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 860})

    # Replay it once the vendor accepts, and watch it succeed.
    simulator.clear_faults()
    page.click("button[value=replay]")
    assert "Confirm: replay 1" in page.content()
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/console/audit")
    wait_until(lambda: (r := get_result(refused_key)) is not None and r.status == "succeeded", timeout=15)
    page.goto(f"{page.base}/console/bind?key={refused_key}")
    assert page.locator("#bind-status").inner_text() == "succeeded"
    assert "SecretNo" in page.locator("#dto").inner_text()
    no_raw_number(page)

    # Purge the unknown-pool entry, after confirming.
    page.goto(f"{page.base}/console/dlq?code=isv.POOLKEY_NOT_EXISTS")
    page.locator("table.entries tbody tr", has_text=bad_pool_key).locator("input[type=checkbox]").check()
    page.click("button[value=purge] >> nth=0")
    assert "cannot be undone" in page.content()
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/console/audit")
    audit = page.locator("table.audit tbody").inner_text()
    assert "replay" in audit and "purge" in audit and "alice-oncall" in audit
    assert page.locator("tr.op-replay", has_text="alice-oncall").count() == 1
    assert page.locator("tr.op-purge", has_text="alice-oncall").count() == 1
    page.goto(f"{page.base}/console/dlq")
    assert bad_pool_key not in page.content() and refused_key not in page.content()


def test_an_ambiguous_dead_letter_offers_only_rebind_or_resolve_and_rebind_records_an_orphan(
    page: Any, redis_url: str, celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    for key, i in (("amb-1", 63), ("amb-2", 62)):
        make_dead_letter(pipeline, key, i, "axb.AMBIGUOUS_OUTCOME")
    log_in(page, redis_url)
    page.goto(f"{page.base}/console/dlq")
    assert page.locator("tr.ambiguous").count() == 2
    page.locator("tr.ambiguous", has_text="amb-1").locator("a").first.click()
    assert page.locator("button[value=replay]").count() == 0
    rebind = page.locator("button[value=rebind]")
    assert "may leave an orphan until" in rebind.inner_text()
    rebind.click()
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/console/audit")
    wait_until(lambda: (r := get_result("amb-1")) is not None and r.status == "succeeded", timeout=15)
    [orphan] = list_possible_orphans(pipeline.redis)
    assert orphan.key == "amb-1"

    page.goto(f"{page.base}/console/dlq")
    page.locator("tr.ambiguous", has_text="amb-2").locator("a").first.click()
    page.fill("input[name=note]", "checked the vendor console: bound as 170****0001")
    page.click("button[value=resolve]")
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/console/audit")
    assert page.locator("tr.op-rebind", has_text="alice-oncall").count() == 1
    assert "checked the vendor console" in page.locator("tr.op-resolve").inner_text()
    page.goto(f"{page.base}/console/orphans")
    assert "amb-1" in page.locator("table").inner_text()
    no_raw_number(page)
