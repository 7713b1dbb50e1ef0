"""Sentry for the worker: one event per dead letter, never a phone number or the secret.

On when ``AXB_SENTRY_DSN`` is set. Every event and breadcrumb passes through :func:`scrub`
before it leaves the process: phone numbers are masked wherever they appear (messages,
exception values, task arguments, local variables, breadcrumbs, extra data), and the
AccessKey secret and the callback secret are replaced outright.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Literal

from worker.errors import is_account_level
from worker.masking import mask_obj
from worker.settings import Settings

log = logging.getLogger(__name__)

_SECRET_MARK = "[secret]"  # noqa: S105 - a placeholder, not a secret
_state: dict[str, Any] = {"secrets": (), "enabled": False}


def _strip_secret(obj: Any, secrets: tuple[str, ...]) -> Any:
    if not secrets:
        return obj
    if isinstance(obj, str):
        for secret in secrets:
            obj = obj.replace(secret, _SECRET_MARK)
        return obj
    if isinstance(obj, dict):
        return {k: _strip_secret(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strip_secret(v, secrets) for v in obj]
    return obj


def scrub(event: Any, _hint: Any = None) -> Any:
    """Mask phone numbers and remove the secrets anywhere in a Sentry event."""
    return mask_obj(_strip_secret(event, _state["secrets"]))


def scrub_breadcrumb(crumb: Any, _hint: Any = None) -> Any:
    return scrub(crumb)


def init_sentry(settings: Settings) -> bool:
    """Start the Sentry SDK with the Celery integration when a DSN is configured."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value():
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    _state["secrets"] = tuple(
        s for s in (settings.secret(), settings.callback_secret.get_secret_value()) if s
    )
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        integrations=[CeleryIntegration(), LoggingIntegration(event_level=logging.ERROR)],
        include_local_variables=True,  # useful, and scrubbed by before_send
        before_send=scrub,
        before_breadcrumb=scrub_breadcrumb,
        traces_sample_rate=0.0,
        environment=settings.sentry_environment,
    )
    _state["enabled"] = True
    return True


_NO_SCOPE = nullcontext()  # reusable: what key_scope gives without Sentry, no generator per key


def key_scope(key: str) -> AbstractContextManager[None]:
    """Sentry scope of ONE key of a many-key message (``axb.bind_many``): it starts with no
    breadcrumbs and keeps its own, so an event (a dead letter, an error) tells only this key's
    story, not the keys worked on before it in the same task. A no-op without Sentry."""
    if not _state["enabled"]:
        return _NO_SCOPE
    return _isolated_key_scope(key)


@contextmanager
def _isolated_key_scope(key: str) -> Iterator[None]:
    import sentry_sdk

    with sentry_sdk.isolation_scope() as scope:  # forks the current scope too
        scope.clear_breadcrumbs()
        sentry_sdk.get_current_scope().clear_breadcrumbs()
        scope.set_tag("bind_key", key)  # scrubbed (masked) like everything else before sending
        yield


def report_dead_letter(
    *, key: str, code: str, message: str, pool: str, attempts: int, request_id: str, dlq_id: str
) -> None:
    """One Sentry event per dead letter, grouped by code; account-level codes page louder."""
    if not _state["enabled"]:
        return
    import sentry_sdk

    level: Literal["fatal", "error"] = "fatal" if is_account_level(code) else "error"
    with sentry_sdk.isolation_scope() as scope:
        scope.set_tag("vendor_code", code)
        scope.set_tag("pool", pool or "-")
        scope.set_tag("account_level", str(is_account_level(code)).lower())
        scope.fingerprint = ["axb-dead-letter", code]
        scope.set_context(
            "dead_letter",
            {
                "key": key,
                "attempts": attempts,
                "request_id": request_id,
                "dlq_id": dlq_id,
                "message": message,
            },
        )
        scope.set_level(level)
        event_id = scope.capture_message(f"dead letter: {code}: {message}", level=level)
    log.debug("sentry event %s for dead letter %s", event_id, dlq_id)
