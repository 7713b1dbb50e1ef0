"""The queue: how keys travel from producers to workers and back, and what guards the way.

- :mod:`~worker.queue.publish`: the Celery wire format (:class:`Publisher`);
- :mod:`~worker.queue.delay`: the delay queue for retries and long waits (:class:`DelayQueue`);
- :mod:`~worker.queue.watchdog`: republishes a watched key whose message was lost;
- :mod:`~worker.queue.pump`: the thread that moves due keys and runs the sweeps;
- :mod:`~worker.queue.envelope` and :mod:`~worker.queue.intake`: junk-proof consumption;
- :data:`STOPPING`: the warm-shutdown flag (defined once, in :mod:`worker.shutdown`);
- :mod:`~worker.queue.celery_app`: the Celery application (``celery -A worker.celery_app``).

The Celery app is not imported here (it creates the app and registers the tasks): import it
from :mod:`worker.celery_app`. Nothing this package imports when loaded may import
:mod:`worker.metrics`: ``axb worker`` imports the Celery app before it sets
``PROMETHEUS_MULTIPROC_DIR``, which prometheus-client's multi-process mode (prefork) needs before
the first metric is made.
"""

from worker.queue.delay import DelayQueue
from worker.queue.envelope import JSON_MIME, MAX_MESSAGE_BYTES, MalformedMessage, check_envelope, readable
from worker.queue.publish import Publisher
from worker.queue.pump import Pump, start_pump, stop_pump
from worker.queue.watchdog import Watchdog
from worker.shutdown import STOPPING

__all__ = [
    "JSON_MIME",
    "MAX_MESSAGE_BYTES",
    "STOPPING",
    "DelayQueue",
    "MalformedMessage",
    "Publisher",
    "Pump",
    "Watchdog",
    "check_envelope",
    "readable",
    "start_pump",
    "stop_pump",
]
