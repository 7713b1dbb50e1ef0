"""What every console route shares: the templates, the logged-in session, numbers on or off."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from worker.console import session as sessions
from worker.console.session import Session
from worker.masking import mask_obj, mask_text
from worker.runtime import get_runtime

PREFIX = "/console"
templates = Jinja2Templates(directory=str(Path(str(files("worker.console").joinpath("templates")))))


def when(ms: Any) -> str:
    """Epoch ms as ``YYYY-MM-DD HH:MM:SS UTC`` ('-' for none)."""
    try:
        return datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ms else "-"
    except (TypeError, ValueError, OverflowError):
        return "-"


templates.env.filters["when"] = when


def numbers_href(request: Request, on: bool) -> str:
    """This page's address (its key, filters) with numbers asked for, or not."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "numbers"]
    if on:
        params.append(("numbers", "1"))
    return f"?{urlencode(params)}"


templates.env.globals["numbers_href"] = numbers_href


class LoginRequired(Exception):
    """No live session: the route answers with the login page (or 401 for a form post)."""


def need_session(request: Request) -> Session:
    """The request's session; raises :class:`LoginRequired` without one (every page needs it)."""
    found = sessions.current(get_runtime().redis, request.cookies.get(sessions.COOKIE))
    if found is None or not found.has("operate"):
        raise LoginRequired()
    return found


def need_csrf(sess: Session, sent: str | None) -> None:
    if not sess.csrf_ok(sent):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


def show_numbers(request: Request, sess: Session) -> bool:
    """Numbers unmasked only when this page asks (``?numbers=1``) and the token has ``numbers``."""
    return request.query_params.get("numbers") == "1" and sess.has("numbers")


def masked(obj: Any, numbers: bool) -> Any:
    return obj if numbers else mask_obj(obj)


def masked_text(text: str, numbers: bool) -> str:
    return text if numbers else mask_text(text)


def render(
    request: Request, name: str, sess: Session | None, status_code: int = 200, **ctx: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"sess": sess, "prefix": PREFIX, **ctx}, status_code=status_code
    )
