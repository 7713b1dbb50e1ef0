"""The worker's warm-shutdown flag: set when Celery begins a warm shutdown, cleared when it starts.

Many-key messages (``axb.bind_many``) start no further key once it is set; the keys left are
published again (see :func:`worker.execution.deliver_many`).
"""

from __future__ import annotations

import threading

__all__ = ["STOPPING"]

STOPPING = threading.Event()
