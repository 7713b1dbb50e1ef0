"""The call to the vendor: timed, its latency recorded once; and a key sent back to the delay
queue when the rate limit has no slot for it within the inline wait."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from worker.errors import VendorError
from worker.metrics import VENDOR_LATENCY
from worker.runtime import Runtime
from worker.store import PENDING, BindRecord, now_ms

T = TypeVar("T")


class Answer(NamedTuple, Generic[T]):
    """What one call brought back: a response, or the vendor error, and how long it took."""

    response: T | None
    error: VendorError | None
    latency_ms: float


_latency: dict[tuple[str, str], Any] = {}  # VENDOR_LATENCY's children: the label lookup once each


def _observe_latency(vendor_action: str, handling: str, latency_ms: float) -> None:
    child = _latency.get((vendor_action, handling))
    if child is None:
        child = _latency[(vendor_action, handling)] = VENDOR_LATENCY.labels(vendor_action, handling)
    child.observe(latency_ms / 1000)


def timed_call(vendor_action: str, send: Callable[[], T]) -> Answer[T]:
    """Call the vendor once; the latency histogram is labelled with the outcome's handling."""
    started = time.monotonic()
    try:
        response = send()
    except VendorError as err:
        latency_ms = (time.monotonic() - started) * 1000
        _observe_latency(vendor_action, err.handling.value, latency_ms)
        return Answer(None, err, latency_ms)
    latency_ms = (time.monotonic() - started) * 1000
    _observe_latency(vendor_action, "ok", latency_ms)
    return Answer(response, None, latency_ms)


def requeue_for_slot(rt: Runtime, rec: BindRecord, wait_s: float, **kept: Any) -> int:
    """No slot within the inline wait: the call does not go out now, and the key waits on the
    delay queue for about when a slot frees up (spending no attempt). Returns when it is due.
    ``kept``: more of the record to keep as it is (:meth:`BindStore.schedule`'s arguments)."""
    due_ms = now_ms() + int(wait_s * 1000) + random.randint(0, 20)
    rt.store.schedule(
        rec.key, due_ms=due_ms, status=rec.status or PENDING, code=rec.code, message=rec.message, **kept
    )
    return due_ms
