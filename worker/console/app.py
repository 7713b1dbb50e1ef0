"""Mount the console on the API's app: static files, security headers, login, the routers."""

from __future__ import annotations

import hmac
import secrets
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from worker.console import actions, pages
from worker.console import session as sessions
from worker.console.security import ConsoleHeaders
from worker.console.web import PREFIX, LoginRequired, render
from worker.runtime import get_runtime

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    nonce = secrets.token_urlsafe(24)
    resp = render(request, "login.html", None, login_csrf=nonce)
    resp.set_cookie(
        sessions.LOGIN_COOKIE,
        nonce,
        max_age=600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=PREFIX,
    )
    return resp


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request, token: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = ""
) -> Response:
    expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf):
        return render(
            request, "login.html", None, 403, error="the form expired: try again", login_csrf=expected
        )
    rt = get_runtime()
    got = sessions.login(rt.redis, token, rt.settings.console_session_s)
    if not isinstance(got, sessions.Session):
        why = "unknown or revoked token" if got is None else "this token lacks the 'operate' scope"
        return render(request, "login.html", None, 401, error=why, login_csrf=expected)
    resp = RedirectResponse(f"{PREFIX}/", status_code=303)
    resp.set_cookie(
        sessions.COOKIE,
        got.session_id,
        max_age=rt.settings.console_session_s,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=PREFIX,
    )
    resp.delete_cookie(sessions.LOGIN_COOKIE, path=PREFIX)
    return resp


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    redis = get_runtime().redis
    found = sessions.current(redis, request.cookies.get(sessions.COOKIE))
    if found is not None and not found.csrf_ok(csrf):
        return Response("missing or wrong CSRF token", status_code=403, media_type="text/plain")
    sessions.logout(redis, request.cookies.get(sessions.COOKIE))
    resp = RedirectResponse(f"{PREFIX}/login", status_code=303)
    resp.delete_cookie(sessions.COOKIE, path=PREFIX)
    return resp


def mount(app: FastAPI) -> None:
    """Serve the console at ``/console`` on ``app`` (the API's ASGI app)."""
    static = Path(str(files("worker.console").joinpath("static")))
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(static)), name="console-static")
    app.include_router(router)
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.add_middleware(ConsoleHeaders, prefix=PREFIX)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        if request.method != "GET":
            return Response("log in first", status_code=401, media_type="text/plain")
        return RedirectResponse(f"{PREFIX}/login", status_code=303)
