"""Run the API with uvicorn: ``axb api [--host --port --workers N]``."""

from __future__ import annotations

import os

import uvicorn

from worker.logs import setup_logging
from worker.settings import get_settings, reset_settings_cache


def serve(*, host: str, port: int, workers: int) -> None:
    settings = get_settings()
    # Every API process (uvicorn's workers read the environment) retries Redis for at most
    # AXB_API_REDIS_RETRY_S, then the request answers 503 (see worker/settings.py).
    retry_s = min(settings.redis_retry_s, settings.api_redis_retry_s)
    os.environ["AXB_REDIS_RETRY_S"] = f"{retry_s:g}"
    reset_settings_cache()
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
