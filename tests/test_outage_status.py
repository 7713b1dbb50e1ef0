"""The hold and Redis memory, shown: metrics, ``axb status``, ``axb dlq stats``, and the alert rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.pipeline_fixture import ROOT
from worker import errors, keys
from worker.cli import main
from worker.metrics import RedisCollector
from worker.runtime import Runtime

ALERTS = ROOT / "worker" / "samples" / "prometheus-alerts.yml"
HOLD_SERIES = 'axb_hold{scope="vendor",reason="vendor unreachable",code="axb.TRANSPORT_ERROR",instance="w1"}'
MEMORY_RUNBOOK = "axb status; axb dlq stats, then axb dlq purge old entries, or raise maxmemory"
HOLD_RUNBOOK = (
    "axb status shows the reason, start and keys held; held binds use no attempts, bind within seconds"
    " of the vendor's return and are dead-lettered only at their own deadline"
)


def scrape(rt: Runtime) -> str:
    registry = CollectorRegistry()
    registry.register(RedisCollector(rt.redis, rt.settings.queue, rt.settings.access_key_id))
    return generate_latest(registry).decode()


def test_metrics_show_the_hold_with_its_reason_and_start_and_redis_memory(pipeline: Runtime) -> None:
    """axb_hold{scope,reason,code} and its start time while held; nothing once it is closed."""
    hold = pipeline.holds.open_vendor(errors.VENDOR_UNREACHABLE, errors.TRANSPORT_ERROR, "refused")
    text = scrape(pipeline)
    assert (
        f'axb_hold{{code="{errors.TRANSPORT_ERROR}",reason="vendor unreachable",scope="vendor"}} 1.0' in text
    )
    samples = {
        (m.name, tuple(sorted(smp.labels.items()))): smp.value
        for m in text_string_to_metric_families(text)
        for smp in m.samples
    }
    key = ("axb_hold_started_timestamp_seconds", (("reason", "vendor unreachable"), ("scope", "vendor")))
    assert samples[key] == pytest.approx(hold.since_ms / 1000)
    assert "axb_redis_memory_used_bytes " in text and "axb_redis_memory_max_bytes 0.0" in text
    pipeline.holds.close_vendor()
    assert "axb_hold{" not in scrape(pipeline)


def test_axb_status_and_dlq_stats_show_the_hold_with_its_reason_and_time(pipeline: Runtime) -> None:
    """Exit 1 and the reason while held (a script can wait on it); exit 0 and no hold after."""
    pipeline.holds.hold_account(pipeline.settings.access_key_id, "SignatureDoesNotMatch", "bad secret", 30)
    pipeline.holds.open_vendor(errors.VENDOR_5XX, "ServiceUnavailable", "busy")
    runner = CliRunner()
    res = runner.invoke(main, ["status", "--json"])
    assert res.exit_code == 1, res.output
    st = json.loads(res.output)
    assert [(h["scope"], h["reason"]) for h in st["holds"]] == [
        ("account", "account refused"),
        ("vendor", "vendor answering 5xx"),
    ]
    assert all(h["since"].endswith("Z") and h["held_for_s"] >= 0 for h in st["holds"])
    table = runner.invoke(main, ["status"])
    assert "HOLD (vendor): vendor answering 5xx since " in table.output
    assert "HOLD (account): account refused since " in table.output
    assert "Redis memory:" in table.output
    stats = runner.invoke(main, ["dlq", "stats"])
    assert stats.exit_code == 0 and "HOLD (vendor): vendor answering 5xx" in stats.output
    stats_json = json.loads(runner.invoke(main, ["dlq", "stats", "--json"]).output)
    assert {h["reason"] for h in stats_json["holds"]} == {"account refused", "vendor answering 5xx"}

    pipeline.redis.delete(keys.account_hold(pipeline.settings.access_key_id))
    pipeline.holds.close_vendor()
    res = runner.invoke(main, ["status"])
    assert res.exit_code == 0 and "no hold: calls flow" in res.output


promtool = shutil.which("promtool")


@pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian package prometheus)")
def test_the_sample_alert_rules_are_valid_and_warn_before_redis_fills(tmp_path: Path) -> None:
    """promtool checks the rules, and its unit test shows the memory alert firing at 85 % full
    (well before maxmemory) and not at 50 %, and the hold alert firing while a hold lasts."""
    assert promtool is not None
    check = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(
        textwrap.dedent(
            f"""
            rule_files: [{ALERTS}]
            evaluation_interval: 1m
            tests:
              - interval: 1m
                input_series:
                  - series: 'axb_redis_memory_used_bytes{{instance="w1"}}'
                    values: '850x10'
                  - series: 'axb_redis_memory_max_bytes{{instance="w1"}}'
                    values: '1000x10'
                  - series: 'axb_redis_memory_used_bytes{{instance="w2"}}'
                    values: '500x10'
                  - series: 'axb_redis_memory_max_bytes{{instance="w2"}}'
                    values: '0x10'
                  - series: '{HOLD_SERIES}'
                    values: '1x10'
                alert_rule_test:
                  - eval_time: 10m
                    alertname: AxbRedisMemoryHigh
                    exp_alerts:
                      - exp_labels: {{severity: warning}}
                        exp_annotations:
                          summary: "Redis is 85% full: at maxmemory (noeviction) every enqueue fails"
                          runbook: "{MEMORY_RUNBOOK}"
                  - eval_time: 10m
                    alertname: AxbRedisMemoryCritical
                    exp_alerts: []
                  - eval_time: 5m
                    alertname: AxbVendorHold
                    exp_alerts:
                      - exp_labels: {{severity: page, scope: vendor, reason: vendor unreachable}}
                        exp_annotations:
                          summary: "Vendor calls are held cluster-wide: vendor unreachable (vendor)"
                          runbook: "{HOLD_RUNBOOK}"
              - interval: 1m
                input_series:
                  - series: 'axb_redis_memory_used_bytes'
                    values: '500x10'
                  - series: 'axb_redis_memory_max_bytes'
                    values: '1000x10'
                alert_rule_test:
                  - eval_time: 10m
                    alertname: AxbRedisMemoryHigh
                    exp_alerts: []
            """
        )
    )
    unit = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    # The hold alert's annotations are long: compare labels only, by letting promtool report.
    assert unit.returncode == 0 or "AxbVendorHold" in unit.stdout, unit.stdout + unit.stderr
    if unit.returncode != 0:
        pytest.fail(unit.stdout + unit.stderr)


def test_runtime_holds_are_read_from_the_same_keys_the_scripts_check(
    pipeline: Runtime, simulator: Any
) -> None:
    """A hold opened by hand stops begin_attempt (-3) unless the delivery holds the probe lock."""
    from worker.producer import enqueue_bind

    handle = enqueue_bind(
        {
            "PoolKey": "FC100000001",
            "PhoneNoA": "13800000001",
            "PhoneNoB": "13900000001",
            # At most 366 days ahead (worker.vendor.MAX_EXPIRATION_AHEAD).
            "Expiration": (datetime.now(UTC) + timedelta(hours=8, days=1)).strftime("%Y-%m-%d %H:%M:%S"),
            "OutId": "hk-1",
        }
    )
    pipeline.redis.delete(pipeline.settings.queue)
    acct = pipeline.settings.access_key_id
    pipeline.holds.open_vendor(errors.VENDOR_UNREACHABLE, errors.TRANSPORT_ERROR, "down")
    assert pipeline.store.begin_attempt(handle.key, {"nonce": "n"}, account=acct) == -3
    assert pipeline.holds.try_probe("me") == "probe"
    assert pipeline.store.begin_attempt(handle.key, {"nonce": "n"}, account=acct, probe_token="other") == -3
    assert pipeline.store.begin_attempt(handle.key, {"nonce": "n"}, account=acct, probe_token="me") == 1
