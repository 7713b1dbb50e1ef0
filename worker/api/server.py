"""Run the API with uvicorn: ``axb api [--host --port --workers N]``."""

from __future__ import annotations

import uvicorn

from worker.logs import setup_logging
from worker.settings import get_settings


def serve(*, host: str, port: int, workers: int) -> None:
    settings = get_settings()
    setup_logging(settings)
    uvicorn.run(
        "worker.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # The access log would print request paths, whose keys may hold personal data.
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=35,  # a ?wait request holds at most 30 s
    )
