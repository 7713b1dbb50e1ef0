"""How long a delivery holds its key (and an operation its binding): written once."""

from __future__ import annotations

from worker.settings import Settings

# Beyond the hard time limit of the task, so that a lease never runs out under a live attempt.
LEASE_EXTRA_S = 5.0


def lease_seconds(settings: Settings) -> float:
    """The lease of one delivery: ``AXB_HARD_TIME_LIMIT_S`` plus :data:`LEASE_EXTRA_S`."""
    return settings.hard_time_limit_s + LEASE_EXTRA_S
