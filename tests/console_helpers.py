"""Console test helpers: log in with httpx, read a form's CSRF token, make a dead letter; and for
the browser tests, one Chromium per module (Debian's, driven by Playwright), logging in on a
page, and the checks every page must pass (no raw number, no horizontal overflow)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_fixture import ApiProcess, make_token
from tests.pipeline_fixture import ROOT
from tests.test_lifecycle import LoseFirstAnswer
from tests.test_pipeline import request
from worker import errors
from worker.producer import BindResult, enqueue_bind
from worker.runtime import Runtime

_HIDDEN = re.compile(r'name="csrf" value="([^"]+)"')

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
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# With AXB_SCREENSHOTS=1 the browser tests write docs/console-*.png (the README shows them).
SCREENSHOTS = os.environ.get("AXB_SCREENSHOTS") == "1"
DOCS = ROOT / "docs"
# Every number the browser tests bind, raw: none may be on a page unless asked for.
RAW = [f"1380000{i:04d}" for i in range(60, 70)] + [f"1390000{i:04d}" for i in range(60, 70)]

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (.ci/run installs it)"
)


def csrf_of(html: str) -> str:
    m = _HIDDEN.search(html)
    assert m, "the page has no CSRF field"
    return m.group(1)


def login(client: httpx.Client, token: str) -> httpx.Response:
    """Log in through the login form (its CSRF cookie and field); returns the last answer."""
    page = client.get("/console/login")
    assert page.status_code == 200
    return client.post("/console/login", data={"token": token, "csrf": csrf_of(page.text)})


def make_dead_letter(pipeline: Runtime, key: str, i: int, code: str, pool: str = "FC100000001") -> str:
    """A bind record (numbers of ``request(i)``) dead-lettered at once with ``code``; the entry's id."""
    now = int(time.time() * 1000)
    pipeline.store.create_many(
        [
            {
                "key": key,
                "task_id": f"t-{key}",
                "request": json.dumps(request(i, PoolKey=pool)),
                "fingerprint": "f",
                "pool": pool,
                "deadline": now + 3_600_000,
                "expires_at": now + 7_200_000,
                "ttl_s": 7200,
            }
        ]
    )
    entry_id = pipeline.store.dead_letter(key, code=code, message="failed")
    assert entry_id
    return str(entry_id)


def ambiguous_bind(pipeline: Runtime, i: int, **over: Any) -> BindResult:
    """A bind of ``request(i, **over)`` whose first copy reaches the vendor and whose answer is
    lost (LoseFirstAnswer, on this process's worker from now on): the worker proves it
    (SignatureNonceUsed on the re-send) and, by the default policy, dead-letters it as
    ``axb.AMBIGUOUS_OUTCOME`` and lists the first copy as a possible orphan."""
    from worker.vendor import DyplsClient

    lossy = LoseFirstAnswer()
    pipeline.client = DyplsClient(pipeline.settings, transport=lossy)
    res = enqueue_bind(request(i, **over)).result(timeout=20)
    assert res.status == "dead_lettered" and res.code == errors.AMBIGUOUS_OUTCOME, res
    assert lossy.lost == 1 and res.possible_orphan
    return res


def browser_fixture() -> Any:
    """A module-scoped fixture: one Chromium on a new empty profile (never `playwright install`)."""

    @pytest.fixture(scope="module")
    def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        from playwright.sync_api import sync_playwright

        profile = tmp_path_factory.mktemp("chromium-profile")
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS, viewport=LAPTOP
            )
            try:
                yield context
            finally:
                context.close()
        shutil.rmtree(profile, ignore_errors=True)

    return browser


def page_fixture() -> Any:
    """A fresh page, logged out, at the laptop size; fails the test on any CSP violation."""

    @pytest.fixture
    def page(browser: Any, api_server: ApiProcess, redis_url: str) -> Iterator[Any]:
        browser.clear_cookies()
        p = browser.new_page()
        p.set_viewport_size(LAPTOP)
        p.set_default_timeout(15_000)
        csp_errors: list[str] = []
        p.on(
            "console",
            lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        p.base = api_server.url  # type: ignore[attr-defined]
        yield p
        p.close()
        assert csp_errors == [], csp_errors

    return page


def log_in(page: Any, redis_url: str, scopes: str = "operate", name: str = "alice-oncall") -> None:
    token = make_token(redis_url, name, scopes)
    page.goto(f"{page.base}/console/")
    assert page.url.endswith("/console/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{page.base}/console/")


def raw_numbers_on(page: Any) -> list[str]:
    html = page.content()
    return [n for n in RAW if n in html]


def no_raw_number(page: Any) -> None:
    assert raw_numbers_on(page) == [], page.url


def overflow_px(page: Any) -> int:
    """How far the page is wider than the window (0: no horizontal scrolling)."""
    return int(page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth"))
