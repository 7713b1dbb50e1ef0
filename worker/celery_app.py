"""The Celery application: ``celery -A worker.celery_app`` (it lives in :mod:`worker.queue.celery_app`)."""

from worker.queue.celery_app import (
    ConfigurationError,
    app,
    celery_config,
    check_settings,
    configure,
    create_app,
)

__all__ = ["ConfigurationError", "app", "celery_config", "check_settings", "configure", "create_app"]
