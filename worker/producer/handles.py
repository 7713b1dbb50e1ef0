"""Handles on enqueued records: read the status, or wait for the end (binds and operations alike)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from worker import keys
from worker.errors import AxbError
from worker.producer import checks
from worker.producer.results import BindResult, LifecycleResult, RecordResult
from worker.runtime import Runtime, get_runtime
from worker.store import BindRecord

R = TypeVar("R", bound=RecordResult)

DEFAULT_POLL_S = 0.005
MAX_POLL_S = 0.1


class BindTimeoutError(AxbError, TimeoutError):
    """The bind did not finish within the wait; it goes on in the background."""


@dataclass
class RecordHandle(Generic[R]):
    """A handle on one record: ``status()`` now, ``result()`` once it ended."""

    key: str
    task_id: str
    created: bool
    runtime: Runtime | None = field(default=None, repr=False)

    def load(self, rec: BindRecord) -> R:  # pragma: no cover - every handle type overrides it
        raise NotImplementedError

    def describe(self) -> str:
        """How a timeout names the record (``bind 'k'``)."""
        return f"bind {self.key!r}"

    def status(self) -> R | None:
        rec = (self.runtime or get_runtime()).store.get(self.key)
        return self.load(rec) if rec else None

    def result(self, timeout: float | None = 30.0, *, poll_s: float = DEFAULT_POLL_S) -> R:
        """Wait until the record succeeded, was dead-lettered or cancelled; raises BindTimeoutError."""
        return wait_done(self.status, self.describe(), timeout, poll_s)


@dataclass
class BindHandle(RecordHandle[BindResult]):
    def load(self, rec: BindRecord) -> BindResult:
        return BindResult.from_record(rec)


@dataclass(kw_only=True)
class LifecycleHandle(RecordHandle[LifecycleResult]):
    action: str
    target: str

    def load(self, rec: BindRecord) -> LifecycleResult:
        return LifecycleResult.from_record(rec)

    def describe(self) -> str:
        return f"{self.action} {self.key!r}"


def handle_for(key: str) -> BindHandle:
    return BindHandle(key=key, task_id=keys.task_id_for(key), created=False)


def wait_done(load: Callable[[], R | None], what: str, timeout: float | None, poll_s: float) -> R:
    timeout_s = checks.seconds("timeout", timeout)
    poll_s = checks.seconds("poll_s", poll_s, optional=False) or DEFAULT_POLL_S
    deadline_s = None if timeout_s is None else time.monotonic() + timeout_s
    delay_s = poll_s
    while True:
        res = load()
        if res is not None and res.done:
            return res
        if deadline_s is not None and time.monotonic() >= deadline_s:
            state = res.status if res else "missing"
            raise BindTimeoutError(f"{what} still {state} after {timeout_s:g} s")
        time.sleep(delay_s)
        delay_s = min(delay_s * 1.5, MAX_POLL_S)
