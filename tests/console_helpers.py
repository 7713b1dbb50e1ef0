"""Console test helpers: log in with httpx, read a form's CSRF token, make a dead letter."""

from __future__ import annotations

import json
import re
import time

import httpx

from tests.test_pipeline import request
from worker.runtime import Runtime

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


def make_dead_letter(pipeline: Runtime, key: str, i: int, code: str) -> str:
    """A bind record (numbers of ``request(i)``) dead-lettered at once with ``code``; the entry's id."""
    now = int(time.time() * 1000)
    pipeline.store.create_many(
        [
            {
                "key": key,
                "task_id": f"t-{key}",
                "request": json.dumps(request(i)),
                "fingerprint": "f",
                "pool": "FC100000001",
                "deadline": now + 3_600_000,
                "expires_at": now + 7_200_000,
                "ttl_s": 7200,
            }
        ]
    )
    entry_id = pipeline.store.dead_letter(key, code=code, message="failed")
    assert entry_id
    return str(entry_id)
