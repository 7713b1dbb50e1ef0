"""The console's read-only pages: overview (and its live fragment), dead letters, one dead
letter, a bind by key, the possible orphans, the audit log."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from worker import keys
from worker.console import chart
from worker.console.session import Session
from worker.console.web import PREFIX, masked, masked_text, need_session, render, show_numbers
from worker.deadletters import (
    NEEDS_FORCE,
    DeadLetter,
    DeadLetters,
    SelectionError,
    parse_entry_id,
    parse_since_ms,
)
from worker.execution import cluster_status
from worker.orphans import list_possible_orphans
from worker.runtime import get_runtime

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Sess = Annotated[Session, Depends(need_session)]
PAGE = 200  # dead letters listed per page


def overview_data() -> dict[str, Any]:
    rt = get_runtime()
    s = rt.settings
    st = cluster_status(rt.redis, s.access_key_id, s.queue)
    in_flight = int(rt.redis.zcard(keys.watch(s.queue)))
    factor = rt.limiter.factor(f"account:{s.access_key_id}")
    minutes = chart.read_minutes(rt.redis, 24 * 60)
    last = minutes[-2] if len(minutes) > 1 else minutes[-1]  # the last whole minute
    observed_qps = sum(v for k, v in last.items() if k.startswith("bind:")) / 60
    hour = chart.build("Last hour", "per minute", minutes[-60:], 1)
    day = chart.build("Last day", "per 10 minutes", minutes, 10)
    return {
        "st": st,
        "in_flight": in_flight,
        "rate": {
            "configured_qps": s.rate_limit_qps,
            "factor": factor,
            "effective_qps": s.rate_limit_qps * factor,
            "observed_qps": observed_qps,
        },
        "charts": [*hour, *day],
        "now_ms": int(time.time() * 1000),
    }


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, sess: Sess) -> Response:
    return render(request, "overview.html", sess, **overview_data())


@router.get("/live", response_class=HTMLResponse)
def overview_live(request: Request, sess: Sess) -> Response:
    """The overview's body alone: what console.js swaps in every few seconds."""
    return render(request, "_live.html", sess, **overview_data())


def filtered(request: Request) -> tuple[list[DeadLetter], dict[str, str], str]:
    """Dead letters matching the query's code, pool, age (``since``) and text in the key."""
    q = request.query_params
    f = {n: q.get(n, "").strip() for n in ("code", "pool", "since", "text")}
    error = ""
    try:
        since_ms = parse_since_ms(f["since"] or None)
    except SelectionError as exc:
        since_ms, error = None, str(exc)
    dead = DeadLetters(get_runtime().redis)
    found = dead.entries(code=f["code"] or None, pool=f["pool"] or None, since_ms=since_ms, limit=100_000)
    if f["text"]:
        found = [dl for dl in found if f["text"] in dl.key]
    return found, f, error


@router.get("/dlq", response_class=HTMLResponse)
def dead_letters(request: Request, sess: Sess) -> Response:
    found, f, error = filtered(request)
    numbers = show_numbers(request, sess)
    stats = DeadLetters(get_runtime().redis).stats()
    rows = [
        {**masked(dl.as_dict(show_numbers=True), numbers), "ambiguous": dl.code in NEEDS_FORCE}
        for dl in found[-PAGE:][::-1]
    ]
    return render(
        request,
        "dead_letters.html",
        sess,
        rows=rows,
        total=len(found),
        f=f,
        error=error,
        codes=sorted(stats["by_code"]),
        pools=sorted(stats["by_pool"]),
        numbers=numbers,
    )


@router.get("/dlq/{entry_id}", response_class=HTMLResponse)
def dead_letter(request: Request, entry_id: str, sess: Sess) -> Response:
    dl = _dead_letter(entry_id)
    if dl is None:
        return render(request, "missing.html", sess, 404, what="dead letter with that id")
    numbers = show_numbers(request, sess)
    return render(
        request,
        "dead_letter.html",
        sess,
        dl=masked(dl.as_dict(show_numbers=True), numbers),
        ambiguous=dl.code in NEEDS_FORCE,
        expires_ms=dl.request_expires_ms(),
        numbers=numbers,
    )


def _dead_letter(entry_id: str) -> DeadLetter | None:
    try:
        return DeadLetters(get_runtime().redis).get(parse_entry_id(entry_id))
    except SelectionError:
        return None


@router.get("/bind", response_class=HTMLResponse)
def bind(request: Request, sess: Sess, key: str = "", entry: str = "") -> Response:
    """A bind by key, or by the id of its dead letter (``entry``): a link that names the bind
    without putting a number held in its key into the page."""
    from worker.producer import get_result

    numbers = show_numbers(request, sess)
    if entry and not key:
        dl = _dead_letter(entry)
        if dl is None:
            return render(request, "missing.html", sess, 404, what="dead letter with that id")
        key = dl.key
    key = key.strip()[:256]
    if not key:
        return render(request, "bind.html", sess, key="", doc=None, sent={}, history=[], numbers=numbers)
    res = get_result(key)
    if res is None:
        return render(request, "missing.html", sess, 404, what=f"bind {masked_text(key, numbers)}")
    doc = res.as_dict(show_numbers=numbers)
    sent = masked(dict(res.request), numbers)
    history = masked(get_runtime().store.history(key), numbers)
    return render(request, "bind.html", sess, key=key, doc=doc, sent=sent, history=history, numbers=numbers)


@router.get("/orphans", response_class=HTMLResponse)
def orphans(request: Request, sess: Sess) -> Response:
    numbers = show_numbers(request, sess)
    rows = [o.as_dict(show_numbers=numbers) for o in list_possible_orphans(get_runtime().redis)]
    return render(request, "orphans.html", sess, rows=rows, numbers=numbers)


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, sess: Sess) -> Response:
    rows = masked(DeadLetters(get_runtime().redis).audit(limit=500), False)
    return render(request, "audit.html", sess, rows=rows)
