"""A real worker under a batch with dead letters: metrics, structured logs, Sentry; no raw number anywhere."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.pipeline_fixture import ROOT, WorkerProcess, apply_env, axb_env, wait_until
from tests.sentry_capture import SentryCapture
from tests.test_pipeline import request
from worker.producer import enqueue_binds
from worker.runtime import Runtime


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_batch_leaves_metrics_logs_and_events_and_no_raw_number(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pool: str
) -> None:
    """Metrics count outcomes and dead letters; one log line per outcome; nothing shows a raw number."""
    capture = SentryCapture()
    port = free_port()
    apply_env(
        monkeypatch, {"AXB_METRICS_PORT": str(port), "AXB_SENTRY_DSN": capture.dsn, "AXB_LOG_LEVEL": "INFO"}
    )
    log_path = tmp_path / "worker.log"
    worker = WorkerProcess(axb_env(), "--pool", pool, "-c", "4", "-l", "INFO", log_path=log_path).start()
    good = [request(400 + i) for i in range(6)]
    bad = [request(410 + i, PoolKey="FC999999999") for i in range(2)]
    raw = {str(r[k]) for r in good + bad for k in ("PhoneNoA", "PhoneNoB")}
    try:
        simulator.set_faults(force_code="isp.SYSTEM_ERROR", force_count=1)
        handles = enqueue_binds(good + bad).handles
        results = [h.result(timeout=60) for h in handles]
        assert sum(r.ok for r in results) == 6 and sum(r.status == "dead_lettered" for r in results) == 2
        text = wait_until(lambda: _scrape(port), timeout=20)
        text = wait_until(
            lambda: (t := _scrape(port)) and _metric(t, "axb_binds_total") >= 8 and t, timeout=20
        )
        wait_until(lambda: len(capture.events) >= 2, timeout=20)
    finally:
        worker.stop()
        capture.close()

    assert _metric(text, "axb_binds_total", outcome="succeeded", code="OK") == 6
    assert _metric(text, "axb_binds_total", outcome="dead_lettered", code="isv.POOLKEY_NOT_EXISTS") == 2
    assert _metric(text, "axb_retries_total", code="isp.SYSTEM_ERROR") == 1
    assert _metric(text, "axb_vendor_call_seconds_count") == 9
    assert _metric(text, "axb_rate_limiter_wait_seconds_count") == 9
    assert _metric(text, "axb_dead_letters") == 2
    assert 0 < _metric(text, "axb_dead_letter_oldest_age_seconds") < 120
    assert "axb_queue_depth" in text

    rules = (ROOT / "worker" / "samples" / "prometheus-alerts.yml").read_text()
    for name in set(re.findall(r"axb_[a-z_]+", rules)):
        assert name in text, f"alert rule uses {name}, which no worker exports"

    log = log_path.read_text()
    outcomes = [line for line in log.splitlines() if "bind key=" in line and "status=" in line]
    assert any("status=succeeded code=OK attempts=2" in line and "request_id=" in line for line in outcomes)
    assert sum("status=dead_lettered code=isv.POOLKEY_NOT_EXISTS" in line for line in outcomes) == 2
    assert len({e["tags"]["vendor_code"] for e in capture.events}) == 1

    cli = subprocess.run(
        [sys.executable, "-m", "worker.cli", "dlq", "list"],
        env=axb_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name, blob in [
        ("worker log", log),
        ("sentry", capture.all_text()),
        ("metrics", text),
        ("dlq list", cli.stdout + cli.stderr),
    ]:
        leaked = [n for n in raw if n in blob]
        assert not leaked, f"raw numbers in {name}: {len(leaked)}"


def _scrape(port: int) -> str:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except httpx.HTTPError:
        return ""
    return r.text if r.status_code == 200 else ""


def test_task_arguments_shown_to_flower_are_masked(pipeline: Runtime) -> None:
    """The Celery message carries only the key, and argsrepr is masked even if the key holds a number."""
    from kombu import Connection

    from worker.producer import enqueue_bind

    enqueue_bind(request(500), idempotency_key="call-13800000500")
    with Connection(pipeline.settings.redis_url) as conn:
        raw_msg = conn.default_channel.client.lrange(pipeline.settings.queue, 0, -1)[0]
    msg = json.loads(raw_msg)
    assert msg["headers"]["argsrepr"] == "['call-138****0500']"
    assert "13900000500" not in raw_msg.decode()
