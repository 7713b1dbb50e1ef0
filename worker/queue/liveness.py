"""The liveness heartbeat: a file per worker process, touched by its consumer loop.

A worker process can be up and consume nothing: a consumer loop blocked in a read (the reason
remote control is off, see :mod:`worker.queue.celery_app`), a process stopped (``SIGSTOP``, a
frozen container) or killed without its supervisor noticing. A probe that only asks "is the
process there" passes all of them. So each worker process's consumer writes
``AXB_LIVENESS_DIR/<node name>`` every ``AXB_LIVENESS_INTERVAL_S`` from the consumer's own timer,
which the event loop fires between two reads of the queue: a loop that stops turning stops the
writes. Tasks run in the pool's threads, not in the loop, so a worker busy with slow vendor calls
keeps writing. :func:`check` (``axb worker-alive``) fails when a file is older than its maximum
age, or when there is none.

While the consumer has lost Redis and reconnects (the broker connection retries forever),
the loop is not running: a thread writes the file instead, marked ``reconnecting``, until the
consumer starts again. Restarting a worker does not bring Redis back; readiness is Redis's own
health check's job. A clean shutdown removes the file; ``axb worker`` clears the directory when
it starts its processes (so that a process count lowered since the last run leaves no stale
file), so give each ``axb worker`` command a directory of its own when several run on one host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import bootsteps

log = logging.getLogger("axb.liveness")

CONSUMING = "consuming"
RECONNECTING = "reconnecting"


def _file_for(directory: str, node: str) -> Path:
    return Path(directory) / node.replace("/", "_")


class Heartbeat:
    """One worker process's liveness file, written by the consumer's timer (or a thread)."""

    def __init__(self, directory: str, node: str, interval_s: float) -> None:
        self.path = _file_for(directory, node)
        self.node = node
        self.interval_s = interval_s
        self._timer_entry: Any = None
        # While the consumer is not running its loop: the thread that beats, and its stop flag.
        self._gap_thread: threading.Thread | None = None
        self._gap_stop = threading.Event()

    def beat(self, state: str = CONSUMING) -> None:
        """Write the file now (atomically); never raises (a full disk must not stop the loop)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = {"node": self.node, "pid": os.getpid(), "state": state, "at_s": round(time.time(), 3)}
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp.write_text(json.dumps(body))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("liveness file %s not written: %s", self.path, exc)

    def consuming(self, timer: Any) -> None:
        """The consumer started its loop: beat now and from ``timer`` (fired by that loop)."""
        self._end_gap()
        self.beat()
        self._timer_entry = timer.call_repeatedly(self.interval_s, self.beat)

    def reconnecting(self) -> None:
        """The consumer stopped its loop (connection lost): beat from a thread until it is back."""
        self._cancel_timer()
        if self._gap_thread is not None:
            return
        self._gap_stop = threading.Event()
        self.beat(RECONNECTING)
        self._gap_thread = threading.Thread(
            target=self._beat_until, args=(self._gap_stop,), name="axb-liveness", daemon=True
        )
        self._gap_thread.start()

    def remove(self) -> None:
        """The worker stops for good: no file (not "stale")."""
        self._cancel_timer()
        self._end_gap()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _beat_until(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            self.beat(RECONNECTING)

    def _end_gap(self) -> None:
        if self._gap_thread is not None:
            self._gap_stop.set()
            self._gap_thread.join(5)
            self._gap_thread = None

    def _cancel_timer(self) -> None:
        if self._timer_entry is not None:
            with contextlib.suppress(Exception):
                self._timer_entry.cancel()
            self._timer_entry = None


class LivenessStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Consumer bootstep: started after the consumer's connection and queues, before its loop."""

    label = "axb liveness"
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.heartbeat: Heartbeat | None = None

    def start(self, c: Any) -> None:
        if self.heartbeat is None:
            from worker.settings import get_settings

            s = get_settings()
            self.heartbeat = Heartbeat(s.liveness_dir, c.hostname, s.liveness_interval_s)
        self.heartbeat.consuming(c.timer)

    def stop(self, c: Any) -> None:
        # A restart after a lost connection (shutdown follows stop when the worker stops).
        if self.heartbeat is not None:
            self.heartbeat.reconnecting()

    def shutdown(self, c: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.remove()


def install(app: Any) -> None:
    """Add the liveness bootstep to ``app``'s worker consumers."""
    app.steps["consumer"].add(LivenessStep)


def clear(directory: str) -> None:
    """Remove every liveness file in ``directory`` (``axb worker`` starting its processes)."""
    with contextlib.suppress(FileNotFoundError):
        for f in Path(directory).iterdir():
            with contextlib.suppress(OSError):
                f.unlink()


@dataclass(frozen=True)
class Report:
    node: str
    pid: int
    state: str
    age_s: float

    def fresh(self, max_age_s: float) -> bool:
        return self.age_s <= max_age_s


def reports(directory: str, now_s: float | None = None) -> list[Report]:
    """Every worker process's last beat in ``directory``, by node name."""
    now = time.time() if now_s is None else now_s
    out: list[Report] = []
    try:
        files = sorted(p for p in Path(directory).iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return out
    for f in files:
        try:
            age = now - f.stat().st_mtime
            body = json.loads(f.read_text())
        except (OSError, ValueError):
            continue  # removed meanwhile, or being replaced
        node, pid, state = str(body.get("node", f.name)), int(body.get("pid", 0)), str(body.get("state", ""))
        out.append(Report(node, pid, state, age))
    return out


def check(directory: str, max_age_s: float, now_s: float | None = None) -> tuple[bool, list[Report]]:
    """Whether every worker process beat within ``max_age_s`` (and at least one did)."""
    found = reports(directory, now_s)
    return bool(found) and all(r.fresh(max_age_s) for r in found), found
