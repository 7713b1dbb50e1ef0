"""Console test helpers: log in with httpx, read a form's CSRF token from a page."""

from __future__ import annotations

import re

import httpx

_HIDDEN = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = _HIDDEN.search(html)
    assert m, "the page has no CSRF field"
    return m.group(1)


def login(client: httpx.Client, token: str) -> httpx.Response:
    """Log in through the login form (its CSRF cookie and field); returns the last answer."""
    page = client.get("/console/login")
    assert page.status_code == 200
    return client.post("/console/login", data={"token": token, "csrf": csrf_of(page.text)})
