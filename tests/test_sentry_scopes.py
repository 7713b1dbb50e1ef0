"""Each key of a many-key message (``axb.bind_many``) has its own Sentry scope: a dead letter's
event carries its own bind's breadcrumbs (log lines, Redis and HTTP calls) and no other key's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env, wait_until
from tests.sentry_capture import SentryCapture
from tests.test_pipeline import request
from worker.producer import enqueue_binds
from worker.runtime import Runtime


def _event_key(event: dict[str, Any]) -> str:
    dead = event.get("contexts", {}).get("dead_letter") or {}
    return str(dead.get("key") or event.get("tags", {}).get("bind_key") or "")


def test_dead_letter_events_of_one_batch_carry_only_their_own_breadcrumbs(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 11: 9 of 20 dead-letter events carried other binds' breadcrumbs. Now, with dead
    letters and successes interleaved in one message, each event mentions only its own key."""
    capture = SentryCapture()
    apply_env(monkeypatch, {"AXB_SENTRY_DSN": capture.dsn, "AXB_LOG_LEVEL": "INFO", "AXB_BATCH_SIZE": "20"})
    good = {f"scope-ok-{i:02d}": request(600 + i, OutId=f"scope-ok-{i:02d}") for i in range(5)}
    bad = {
        f"scope-dl-{i:02d}": request(620 + i, OutId=f"scope-dl-{i:02d}", PoolKey="FC999999999")
        for i in range(5)
    }
    items = [r for pair in zip(good.values(), bad.values(), strict=True) for r in pair]  # interleaved
    worker = WorkerProcess(
        axb_env(), "--pool", "threads", "-c", "1", "-l", "INFO", log_path=tmp_path / "w.log"
    )
    worker.start()
    try:
        results = [h.result(timeout=60) for h in enqueue_binds(items).handles]
        assert sum(r.ok for r in results) == 5 and sum(r.status == "dead_lettered" for r in results) == 5
        wait_until(lambda: len({_event_key(e) for e in capture.events} & set(bad)) == 5, timeout=30)
    finally:
        worker.stop()
        capture.close()

    all_keys = set(good) | set(bad)
    dead_letter_events = [e for e in capture.events if _event_key(e) in bad]
    assert len(dead_letter_events) >= 5
    for event in capture.events:
        own = _event_key(event)
        crumbs = json.dumps(event.get("breadcrumbs", {}).get("values", []), ensure_ascii=False)
        others = sorted(k for k in all_keys - {own} if k in crumbs)
        assert not others, f"the event of {own or '?'} carries breadcrumbs of {others}"
        if own in bad:
            assert own in crumbs  # its own story is there: log lines, Redis and HTTP calls
