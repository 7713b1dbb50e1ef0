"""The ASGI app of ``axb api``: :func:`create_app` wires the routes, the error handlers, the
body cap and the asyncio Redis client (for ``?wait``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from worker.api import errors, routes_binds, routes_health, routes_lifecycle
from worker.api.body_limit import BodyLimit
from worker.api.waiting import DoneWatcher
from worker.connections import async_redis_client
from worker.console import mount as mount_console
from worker.settings import Settings, get_settings

DESCRIPTION = """\
Enqueue Dypls BindAxb binds from any language, wait for their results, unbind and extend them.

Every `/v1` route takes `Authorization: Bearer <token>` (tokens come from `axb token create`;
scopes: `bind` to enqueue, `read` to read results, `numbers` to see phone numbers unmasked,
`operate` to unbind and extend). Parameter names are the vendor's (`PoolKey`, `PhoneNoA`, ...).
Errors are `{"Code", "Message", "Problems": [{"field", "code", "reason"}]}`; a refused value
names the field and the vendor code it would have caused.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    s = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.aredis = async_redis_client(s, max_connections=max(64, s.worker_concurrency * 4))
        app.state.watcher = DoneWatcher(app.state.aredis)
        try:
            yield
        finally:
            await app.state.watcher.close()
            await app.state.aredis.aclose()

    app = FastAPI(
        title="axb-bind-worker API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(routes_binds.router)
    app.include_router(routes_lifecycle.router)
    app.include_router(routes_health.router)
    mount_console(app)  # the on-call console at /console (worker.console)
    app.add_middleware(BodyLimit, max_bytes=s.api_max_body_bytes)
    return app
