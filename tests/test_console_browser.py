"""The on-call console in a real headless browser (Debian's chromium driven by Playwright),
against a real ``axb api`` process, a real Celery worker and the Dypls simulator: the issue's
walk-through (log in, chart, filter, open, replay, purge, audit), ambiguous dead letters
(rebind, mark resolved, the orphans page), live updates, numbers shown only on request, and
the pages at a phone's width.

One browser per module (start-up is the slow part). With ``AXB_SCREENSHOTS=1`` the tests write
docs/console-overview.png, docs/console-dead-letter.png, docs/console-ambiguous.png and
docs/console-phone.png.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.api_fixture import api_pipeline_fixture, api_server_fixture
from tests.console_helpers import (
    DOCS,
    LAPTOP,
    PHONE,
    SCREENSHOTS,
    ambiguous_bind,
    browser_fixture,
    log_in,
    needs_chromium,
    no_raw_number,
    overflow_px,
    page_fixture,
    raw_numbers_on,
)
from tests.test_pipeline import bindings_for, expiration, request
from tests.waiting import wait_until
from worker.console.web import when
from worker.deadletters import DeadLetters
from worker.orphans import list_possible_orphans
from worker.producer import enqueue_binds, get_result
from worker.runtime import Runtime

pytestmark = needs_chromium
api_server = api_server_fixture()
pipeline = api_pipeline_fixture()
browser = browser_fixture()
page = page_fixture()


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

    # The overview: charts with lines (binds by outcome, dead letters by code; hour and day),
    # the dead letters counted, live.
    captions = page.locator("figure.chart figcaption").all_inner_texts()
    for span in ("Last hour", "Last day"):
        for what in ("binds by outcome", "dead letters by code"):
            assert any(c.startswith(f"{span}: {what}") for c in captions), captions
    assert page.locator("svg polyline.s-dead").count() >= 1 and page.locator("svg polyline.s-ok").count() >= 1
    legends = page.locator("figure.chart ul.legend").all_inner_texts()
    assert "succeeded: 4" in legends[0] and "dead_lettered: 2" in legends[0]
    assert "isv.ACCOUNT_ABNORMAL: 1" in legends[1] and "isv.POOLKEY_NOT_EXISTS: 1" in legends[1]
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
    [entry] = [d for d in DeadLetters(pipeline.redis).entries() if d.key == refused_key]
    assert entry.request_id and entry.request_id in page.locator("dl.facts").inner_text()
    assert entry.request_id in history  # each attempt's RequestId
    no_raw_number(page)
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "console-dead-letter.png"), full_page=True)

    # Replay it once the vendor accepts, and watch it succeed.
    simulator.clear_faults()
    page.click("button[value=replay]")
    assert "Confirm: replay 1" in page.content()
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/console/audit")
    wait_until(lambda: (r := get_result(refused_key)) is not None and r.status == "succeeded", timeout=15)
    page.goto(f"{page.base}/console/bind?key={refused_key}")
    assert page.locator("#bind-status").inner_text() == "succeeded"
    assert page.locator("#bind-state").inner_text() != "-"
    assert "SecretNo" in page.locator("#dto").inner_text()
    history = page.locator("#history").inner_text()
    assert "isv.ACCOUNT_ABNORMAL" in history and "OK" in history  # the refusal, then the replay
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


def test_the_overview_updates_live_without_a_reload_when_a_worker_finishes_binds(
    page: Any, redis_url: str, celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    log_in(page, redis_url)
    outcomes = page.locator("figure.chart ul.legend").first
    assert outcomes.inner_text() == "nothing yet"
    updated = page.locator("p.updated").inner_text()
    # A mark on this document: a reload (console.js reloads on a lost session) would drop it.
    page.evaluate("document.documentElement.dataset.loadedOnce = 'yes'")
    for h in enqueue_binds([request(i) for i in range(64, 67)]).handles:
        assert h.result(timeout=15).ok
    expect(outcomes).to_contain_text("succeeded: 3", timeout=15_000)
    assert page.evaluate("document.documentElement.dataset.loadedOnce") == "yes"
    assert page.locator("p.updated").inner_text() != updated
    expect(page.locator("#in-flight")).to_have_text("0", timeout=15_000)


def binds_with_numbers(pipeline: Runtime) -> str:
    """A bind that succeeds, and one whose answer is lost (an ambiguous dead letter and a
    possible orphan), each with a number in its key too; the second's key."""
    assert enqueue_binds([request(68, OutId="trip-13800000068")]).handles[0].result(timeout=15).ok
    return ambiguous_bind(pipeline, 69, OutId="trip-13800000069").key


def test_numbers_are_masked_on_every_page_unless_a_numbers_user_asks_on_that_page(
    page: Any, redis_url: str, celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """Both ways: `operate` alone never sees a number, not even with ?numbers=1; `numbers` sees
    them on the one page where it clicks "Show numbers on this page", and the next page is
    masked again."""
    key = binds_with_numbers(pipeline)
    [entry] = DeadLetters(pipeline.redis).entries()
    [orphan] = list_possible_orphans(pipeline.redis)
    assert entry.key == orphan.key == key
    pages = {
        "dead letters": ("/console/dlq?text=trip", "13800000069"),
        "a dead letter": (f"/console/dlq/{entry.id}", "13800000069"),
        "its bind": (f"/console/bind?entry={entry.id}", "13800000069"),
        "orphans": ("/console/orphans", "13800000069"),
    }

    log_in(page, redis_url, "operate", "oncall")
    for path, _ in pages.values():
        sep = "&" if "?" in path else "?"
        page.goto(f"{page.base}{path}{sep}numbers=1")
        assert page.locator("#show-numbers").count() == 0
        no_raw_number(page)

    page.context.clear_cookies()
    log_in(page, redis_url, "operate,numbers", "lead")
    for name, (path, number) in pages.items():
        page.goto(f"{page.base}{path}")
        no_raw_number(page)
        page.click("#show-numbers")
        page.wait_for_url("**numbers=1**")
        assert number in page.content(), name
        assert page.locator("#mask-numbers").count() == 1
        page.click("nav >> text=Overview")
        page.goto(f"{page.base}{path}")  # the next visit: masked again
        no_raw_number(page)
    # The dead letter's link to its bind works with the key masked (it names the entry).
    page.goto(f"{page.base}/console/dlq/{entry.id}")
    page.click("#bind-link")
    assert page.locator("#bind-status").inner_text() == "dead_lettered"
    no_raw_number(page)
    # The bind page with numbers shows the request's numbers.
    page.goto(f"{page.base}/console/bind?entry={entry.id}&numbers=1")
    assert "13800000069" in page.content() and "13900000069" in page.content()
    # The audit page is masked for everyone: there is no toggle.
    page.goto(f"{page.base}/console/audit")
    assert page.locator("#show-numbers").count() == 0


def test_every_page_fits_a_phone_without_sideways_scrolling(
    page: Any, redis_url: str, celery_worker: Any, simulator: Any, pipeline: Runtime
) -> None:
    """390 x 844 (a common phone): no page is wider than the window; long codes, keys and
    tables wrap or scroll inside their own box."""
    refused_key, bad_pool_key = dead_letters_from_a_real_worker(simulator)
    ambiguous_bind(pipeline, 63)  # and a possible orphan
    page.set_viewport_size(PHONE)
    page.goto(f"{page.base}/console/login")
    assert overflow_px(page) <= 0, "login"
    log_in(page, redis_url)
    wide: dict[str, int] = {}
    wide["overview"] = overflow_px(page)
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "console-phone.png"), full_page=True)
    [entry] = [d for d in DeadLetters(pipeline.redis).entries() if d.key == refused_key]
    for name, path in (
        ("dead letters", "/console/dlq"),
        ("a dead letter", f"/console/dlq/{entry.id}"),
        ("a bind", f"/console/bind?key={bad_pool_key}"),
        ("orphans", "/console/orphans"),
    ):
        page.goto(f"{page.base}{path}")
        wide[name] = overflow_px(page)
        no_raw_number(page)
    page.goto(f"{page.base}/console/dlq")
    page.click("button[value=purge] >> nth=1")  # purge all matching: the confirmation page
    wide["confirm"] = overflow_px(page)
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/console/audit")
    wide["audit"] = overflow_px(page)
    assert {k: v for k, v in wide.items() if v > 0} == {}, wide
    page.set_viewport_size(LAPTOP)
    assert raw_numbers_on(page) == []


def test_on_call_rebinds_one_ambiguous_dead_letter_and_resolves_another_from_the_console(
    page: Any,
    redis_url: str,
    celery_worker: Any,
    simulator: Any,
    pipeline: Runtime,
) -> None:
    assert pipeline.settings.on_ambiguous == "dead_letter"
    first = ambiguous_bind(pipeline, 63, Expiration=expiration(24 * 60))
    second = ambiguous_bind(pipeline, 62, Expiration=expiration(24 * 60))
    assert len(bindings_for(simulator, "order-63")) == 1  # the lost answer's binding exists
    entries = {d.key: d for d in DeadLetters(pipeline.redis).entries()}
    log_in(page, redis_url)
    no_raw_number(page)

    # Both marked ambiguous in the list.
    page.click("nav >> text=Dead letters")
    assert page.locator("tr.ambiguous").count() == 2
    assert page.locator("tr.ambiguous .badge", has_text="ambiguous").count() == 2
    no_raw_number(page)

    # The first: no replay, only rebind (with the Expiration) or mark resolved.
    page.locator("tr.ambiguous", has_text="order-63").locator("a").first.click()
    warn = page.locator("p.warnbox").inner_text()
    assert "ambiguous" in warn
    # Where on-call looks: the first copy's pool and send time, not the proof's RequestId.
    assert f"in pool {entries['order-63'].pool} made around" in warn, warn
    assert page.locator("button[value=replay]").count() == 0
    rebind = page.locator("button[value=rebind]")
    until = when(entries["order-63"].request_expires_ms())
    assert until != "-" and abs(entries["order-63"].request_expires_ms() - first.expires_at) < 60_000
    assert rebind.inner_text() == f"Rebind (may leave an orphan until {until})"
    assert page.locator("button[value=resolve]").inner_text() == "Mark resolved"
    no_raw_number(page)
    if SCREENSHOTS:
        page.screenshot(path=str(DOCS / "console-ambiguous.png"), full_page=True)

    # Rebind it, after confirming; the worker binds afresh and succeeds.
    rebind.click()
    assert "Confirm: rebind 1" in page.locator("h1").inner_text()
    assert f"may leave an orphan until {until}" in page.locator("ul.confirm-list").inner_text()
    no_raw_number(page)
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/console/audit")
    no_raw_number(page)
    wait_until(lambda: (r := get_result("order-63")) is not None and r.status == "succeeded", timeout=20)
    assert len(bindings_for(simulator, "order-63")) == 2  # the first copy's, and the rebind's

    # The bind page says so; the orphans page lists the first copy, noted as rebound here.
    page.goto(f"{page.base}/console/bind?key=order-63")
    assert page.locator("#bind-status").inner_text() == "succeeded"
    assert page.locator("#possible-orphan").inner_text().startswith("yes")
    no_raw_number(page)
    page.click("#possible-orphan a")
    page.wait_for_url(f"{page.base}/console/orphans")
    row = page.locator("table tbody tr", has_text="order-63")
    assert row.count() == 1 and "rebound from the console by alice-oncall" in row.inner_text()
    assert until in row.inner_text()  # listed until the first copy's Expiration
    no_raw_number(page)
    assert [o.key for o in list_possible_orphans(pipeline.redis)].count("order-63") == 1

    # The second: mark resolved with a note, after confirming.
    page.goto(f"{page.base}/console/dlq/{entries['order-62'].id}")
    page.fill("input[name=note]", "checked the vendor console: bound, unbound it by hand")
    page.click("button[value=resolve]")
    assert "Confirm: mark resolved 1" in page.locator("h1").inner_text()
    page.click("#confirm")
    page.wait_for_url(f"{page.base}/console/audit")
    rebound = page.locator("tr.op-rebind", has_text="alice-oncall")
    resolved = page.locator("tr.op-resolve", has_text="alice-oncall")
    assert rebound.count() == 1 and resolved.count() == 1
    assert entries["order-63"].id in rebound.inner_text()
    assert entries["order-62"].id in resolved.inner_text()
    assert "checked the vendor console" in resolved.inner_text()
    no_raw_number(page)
    page.goto(f"{page.base}/console/dlq")
    assert page.locator("table.entries tbody tr.ambiguous").count() == 0
    rec = get_result("order-62")
    assert rec is not None and rec.status == "dead_lettered" and second.possible_orphan
