"""``GET /healthz`` (the process answers) and ``GET /readyz`` (Redis answers); no token."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from worker.api.schemas import ErrorBody, Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Health,
    summary="Redis answers",
    responses={503: {"model": ErrorBody, "description": "Redis does not answer"}},
)
async def readyz(request: Request) -> JSONResponse:
    try:
        await asyncio.wait_for(request.app.state.aredis.ping(), timeout=2.0)
    except Exception:  # any failure to reach Redis means "not ready", never a 500
        body = {"Code": "axb.UNAVAILABLE", "Message": "Redis does not answer", "Problems": []}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"status": "ok"})
