"""The delay pump: a thread in every worker that moves due keys back onto the Celery queue.

It also runs the watchdog (:mod:`worker.queue.watchdog`) and the dead-letter retention sweep
(:mod:`worker.deadletters.retention`). One pump per worker process: :func:`start_pump` /
:func:`stop_pump` (the Celery app's ``worker_ready`` / ``worker_shutdown`` signals call them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from worker import keys
from worker.deadletters import Retention
from worker.errors import RedisFullError
from worker.queue.delay import DelayQueue
from worker.queue.watchdog import Watchdog

log = logging.getLogger("worker.delay")


class Pump:
    """Moves due keys from the delay queue to the Celery queue, in a daemon thread.

    It polls every ``idle_sleep_s``; with ``wake_key`` a second thread blocks on that list
    (:func:`keys.delay_wake`) and wakes the pump at once for an entry due now (a completion
    callback). A lost token only costs the poll interval: the entry is in the delay set."""

    def __init__(
        self,
        queue: DelayQueue,
        publish: Callable[[Sequence[str]], None],
        *,
        idle_sleep_s: float = 0.05,
        batch: int = 500,
        watchdog: Watchdog | None = None,
        watchdog_every_ms: int = 5_000,
        wake_key: str | None = None,
        retention: Callable[[], int] | None = None,
        retention_every_ms: int = 60_000,
    ) -> None:
        self.queue = queue
        self.publish = publish
        self.watchdog = watchdog
        self.watchdog_every_ms = watchdog_every_ms
        self._last_watch = 0
        # The dead-letter retention sweep (worker.deadletters.retention): its own lock makes one pump of the
        # cluster sweep per period; a failure is logged and never stops the delay queue.
        self.retention = retention
        self.retention_every_ms = retention_every_ms
        self._last_retention = 0
        self.idle_sleep_s = idle_sleep_s
        self.batch = batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_recover = 0
        self.wake_key = wake_key
        self._wake = threading.Event()
        self._waker: threading.Thread | None = None

    def run_once(self) -> int:
        ts = int(time.time() * 1000)
        if ts - self._last_recover > 5_000:
            self._last_recover = ts
            self.queue.recover_stale()
        if self.watchdog is not None and ts - self._last_watch > self.watchdog_every_ms:
            self._last_watch = ts
            self.watchdog.sweep()
        if self.retention is not None and ts - self._last_retention > self.retention_every_ms:
            self._last_retention = ts
            try:
                self.retention()
            except Exception:
                log.warning("dead-letter retention sweep failed; tried again next period", exc_info=True)
        due = self.queue.claim_due(self.batch)
        if due:
            self.publish(due)
            self.queue.confirm(due)
        return len(due)

    def _loop(self) -> None:
        full_logged = 0.0
        while not self._stop.is_set():
            try:
                moved = self.run_once()
            except RedisFullError as err:  # nothing was written: wait for memory to be freed
                if time.monotonic() - full_logged > 30:
                    full_logged = time.monotonic()
                    log.error("delay pump: %s; the worker waits and tries again every second", err)
                self._stop.wait(1.0)
                continue
            except Exception:  # Redis down, broker down: claims are recovered, try again
                log.warning("delay pump: cycle failed; retrying", exc_info=True)
                self._stop.wait(1.0)
                continue
            if moved < self.batch:
                self._wake.wait(self.idle_sleep_s)
                self._wake.clear()

    def _wait_for_wake(self) -> None:
        """Block on the wake list (one connection of the pool) and wake the pump per token."""
        assert self.wake_key is not None
        while not self._stop.is_set():
            try:
                if self.queue.r.blpop([self.wake_key], timeout=1):
                    self._wake.set()
            except Exception:  # Redis down: the pump's own polling goes on meanwhile
                log.debug("delay pump: wake-up list unavailable; retrying", exc_info=True)
                self._stop.wait(1.0)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="axb-delay-pump", daemon=True)
            self._thread.start()
        if self.wake_key and (self._waker is None or not self._waker.is_alive()):
            self._waker = threading.Thread(target=self._wait_for_wake, name="axb-delay-wake", daemon=True)
            self._waker.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)


_pump: Pump | None = None


def start_pump() -> Pump:
    """Start this process's pump (delay queue, watchdog, retention sweep); built once."""
    global _pump
    # The runtime holds this package's delay queue and publisher: imported when first called.
    from worker.runtime import get_runtime

    rt = get_runtime()
    if _pump is None:
        # Sweep a few times per watch period, but not more than once a second; the lock lets
        # one pump of the cluster sweep a queue at a time.
        every_ms = int(min(5_000, max(1_000, rt.settings.watchdog_s * 250)))

        def publish(key_list: Sequence[str]) -> None:
            rt.publish(key_list, batch=True)

        watchdog = Watchdog(
            rt.redis, rt.settings.queue, rt.settings.watchdog_s, publish, lock_ms=int(every_ms * 0.9)
        )
        retention = Retention(
            rt.redis, rt.settings.dlq_retention_days, every_s=rt.settings.dlq_retention_sweep_s
        )
        _pump = Pump(
            rt.delay,
            publish,
            watchdog=watchdog,
            watchdog_every_ms=every_ms,
            wake_key=keys.delay_wake(rt.settings.queue),
            retention=retention.sweep,
            retention_every_ms=int(rt.settings.dlq_retention_sweep_s * 1000),
        )
    _pump.start()
    return _pump


def stop_pump() -> None:
    global _pump
    if _pump is not None:
        _pump.stop()
        _pump = None
