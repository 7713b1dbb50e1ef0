"""Per-token request limits: the project's GCRA limiter (:mod:`worker.limiter`) with one scope
per token, so one runaway producer cannot fill the queue for the rest. Shared by every API
process through Redis; a refused request gets 429 with ``Retry-After``."""

from __future__ import annotations

import math

from worker import keys
from worker.limiter import Limit, Reservation
from worker.settings import Settings


def token_limit(settings: Settings, token_id: str) -> Limit:
    """The limit of one token: ``AXB_API_RATE_LIMIT_QPS`` sustained, ``AXB_API_RATE_LIMIT_BURST`` at once."""
    return Limit(
        scope=keys.api_rate_scope(token_id),
        rate_qps=settings.api_rate_limit_qps,
        burst=settings.api_rate_limit_burst,
    )


def retry_after_s(reservation: Reservation) -> int:
    """Whole seconds for ``Retry-After`` (at least 1) from a refused reservation."""
    return max(1, math.ceil(reservation.wait_s))
