"""The process's warm-shutdown flag, :data:`STOPPING`.

Set by the Celery app when the worker begins a warm shutdown (SIGTERM) and cleared when it is
ready again; a many-key message checks it between keys and gives the rest back to the queue.
"""

from __future__ import annotations

import threading

STOPPING = threading.Event()
