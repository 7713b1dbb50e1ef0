"""The console's actions on dead letters: replay, purge, rebind (ambiguous), mark resolved.

Each is two posts: the first shows what would happen and asks for confirmation, the second
(``confirm=yes``) does it and writes the audit stream with the acting token's name. Both posts
need the session and its CSRF token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from worker.console.pages import filtered
from worker.console.session import Session
from worker.console.web import PREFIX, need_csrf, need_session, render
from worker.deadletters import NEEDS_FORCE, DeadLetter, DeadLetters, SelectionError, parse_entry_id
from worker.masking import mask_text
from worker.orphans import record_possible_orphan
from worker.runtime import get_runtime

router = APIRouter(prefix=PREFIX, include_in_schema=False)
ACTIONS = ("replay", "purge", "rebind", "resolve")
HOST = "console"  # where an action came from, in the audit stream


def _selected(request: Request, ids: list[str], scope: str) -> list[DeadLetter]:
    dead = DeadLetters(get_runtime().redis)
    if scope == "filter":
        return filtered(request)[0]
    out = []
    for text in ids[:1000]:
        try:
            dl = dead.get(parse_entry_id(text))
        except SelectionError:  # not an id: names nothing
            continue
        if dl is not None:
            out.append(dl)
    return out


@router.post("/dlq/action")
async def action(request: Request, sess: Annotated[Session, Depends(need_session)]) -> Response:
    form = await request.form()
    need_csrf(sess, str(form.get("csrf") or ""))
    op = str(form.get("op") or "")
    if op not in ACTIONS:
        return Response(f"unknown action {op[:20]!r}", status_code=400, media_type="text/plain")
    ids = [str(i) for i in form.getlist("ids")]
    scope = str(form.get("scope") or "ids")
    note = mask_text(str(form.get("note") or "").strip())[:500]
    # Redis calls and the replay's pacing block: run them off the event loop (the API's ?wait).
    return await run_in_threadpool(_act, request, sess, op, ids, scope, note, form.get("confirm") == "yes")


def _act(
    request: Request, sess: Session, op: str, ids: list[str], scope: str, note: str, confirmed: bool
) -> Response:
    entries = _selected(request, ids, scope)
    ambiguous = [dl for dl in entries if dl.code in NEEDS_FORCE]
    if op in ("rebind", "resolve"):
        entries = ambiguous  # only the reconcile flow acts on ambiguous entries
    elif op == "replay":
        entries = [dl for dl in entries if dl.code not in NEEDS_FORCE]
    if not confirmed:
        return render(
            request,
            "confirm.html",
            sess,
            op=op,
            entries=[dl.as_dict() for dl in entries],
            skipped=len(ambiguous) if op == "replay" else 0,
            note=note,
            scope=scope,
            query=request.url.query,
            expires={dl.id: dl.request_expires_ms() for dl in entries},
        )
    if op == "resolve" and not note:
        return Response("mark resolved needs a note", status_code=400, media_type="text/plain")
    rt = get_runtime()
    dead = DeadLetters(rt.redis)
    if op == "purge":
        dead.purge(entries, selection=f"console {len(entries)} entries", user=sess.name, host=HOST)
    elif op == "resolve":
        n = dead.drop(entries)
        dead.write_audit("resolve", entries, n, user=sess.name, host=HOST, note=note)
    else:
        force = op == "rebind"
        report = dead.replay(
            entries,
            rt.publish,
            force=force,
            result_ttl_extra_s=rt.settings.result_ttl_extra_s,
            queue=rt.settings.queue,
        )
        done = set(report.replayed)
        if force:
            for dl in entries:
                if dl.id in done:
                    # The worker recorded the first copy when it dead-lettered the bind (its
                    # nonce is on the entry): the same ledger entry, its note updated.
                    first = dl.first_copy
                    sent_at_ms = first.get("sent_at") or dl.last_attempt_at or dl.dead_lettered_at
                    record_possible_orphan(
                        rt.redis,
                        key=dl.key,
                        request_id=str(first.get("request_id") or dl.request_id),
                        pool=dl.pool,
                        sent_at_ms=int(sent_at_ms or 0),
                        expires_at_ms=dl.request_expires_ms(),
                        note=f"rebound from the console by {sess.name}",
                        nonce=str(first.get("nonce") or ""),
                    )
        replayed = [dl for dl in entries if dl.id in done]
        dead.write_audit(op, replayed, len(replayed), user=sess.name, host=HOST, skipped=len(report.skipped))
    return RedirectResponse(f"{PREFIX}/audit", status_code=303)
