"""The CLI gaps of issue 11: masked output everywhere (unless --show-numbers, in every mode), and
for anything wrong one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipeline_fixture import ROOT, apply_env, axb_env, wait_until
from worker import keys
from worker.cli import main
from worker.producer import enqueue_bind
from worker.runtime import Runtime

# At most 366 days ahead (worker.vendor.MAX_EXPIRATION_AHEAD).
TOMORROW = (datetime.now(UTC) + timedelta(hours=8, days=1)).strftime("%Y-%m-%d %H:%M:%S")

PHONE_KEY = "call-13800138000"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def dead_letter(rt: Runtime, key: str = PHONE_KEY) -> str:
    """A dead-letter entry as the worker writes them (a key that is a phone number, a message
    quoting another)."""
    entry_id = rt.redis.xadd(
        keys.DEAD_LETTERS,
        {
            "key": key,
            "code": "isv.POOLKEY_NOT_EXISTS",
            "message": "no such pool for 13900139000",
            "pool": "FC999999999",
            "attempts": "1",
            "request": json.dumps({"PhoneNoA": "13800138000", "PhoneNoB": "13900139000"}),
        },
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def assert_refused(out: Result, *words: str) -> None:
    """Exit code 2, no traceback, exactly one line on stderr naming what was wrong."""
    assert out.exit_code == 2, out.output
    assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
    assert "Traceback" not in out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_dlq_watch_masks_a_key_that_is_a_phone_number(rt: Runtime, tmp_path: Path) -> None:
    """Issue 11: watch printed the key unmasked. Masked by default, shown with --show-numbers."""
    outputs = []
    err_path = tmp_path / "watch.err"
    for flags in ([], ["--show-numbers"]):
        with err_path.open("w") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "worker.cli",
                    "dlq",
                    "watch",
                    "--count",
                    "1",
                    "--interval",
                    "0.2",
                    *flags,
                ],
                env=axb_env(),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
            try:
                wait_until(lambda: "watching" in err_path.read_text(), timeout=20)
                dead_letter(rt)
                stdout, _ = proc.communicate(timeout=20)
            finally:
                proc.kill()
                proc.wait(5)
        assert proc.returncode == 0, err_path.read_text()
        outputs.append(stdout)
    masked, shown = outputs
    assert "call-138****8000" in masked and "139****9000" in masked
    assert "13800138000" not in masked and "13900139000" not in masked
    assert "call-13800138000" in shown and "13900139000" in shown


def test_result_shows_numbers_in_table_mode_with_show_numbers(rt: Runtime) -> None:
    """Issue 11: --show-numbers still masked in table mode. JSON and table agree now."""
    enqueue_bind(
        {"PoolKey": "FC100000001", "PhoneNoA": "13800000001", "PhoneNoB": "13900000001",
         "Expiration": TOMORROW},
        idempotency_key=PHONE_KEY,
    )  # fmt: skip
    for mode in ([], ["--json"]):
        plain = run("result", PHONE_KEY, *mode)
        shown = run("result", PHONE_KEY, "--show-numbers", *mode)
        assert plain.exit_code == 0 and shown.exit_code == 0
        assert "call-138****8000" in plain.stdout and "13800138000" not in plain.stdout
        assert "call-13800138000" in shown.stdout


def test_dlq_show_table_mode_shows_numbers_with_show_numbers(rt: Runtime) -> None:
    entry = dead_letter(rt)
    assert "13800138000" not in run("dlq", "show", entry).stdout
    assert "call-13800138000" in run("dlq", "show", entry, "--show-numbers").stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["dlq", "show", "not-an-id"], ["not-an-id", "dead-letter id"]),
        (["dlq", "show", "99999999999999999999999-0"], ["dead-letter id"]),
        (["dlq", "replay", "not-an-id"], ["dead-letter id"]),
        (["dlq", "purge", "x-1", "--yes"], ["dead-letter id"]),
        (["dlq", "list", "--since", "garbage"], ["--since"]),
        (["dlq", "list", "--since", "1e30d"], ["--since"]),
        (["dlq", "list", "--limit", "-1"], ["--limit"]),
        (["dlq", "watch", "--interval", "nan"], ["--interval"]),
        (["dlq", "replay", "--all", "--rate", "inf"], ["--rate"]),
        (["enqueue", "--pool-key", "FC1", "--expires-in", "nan"], ["--expires-in"]),
        (["enqueue", "--pool-key", "FC1", "--expires-in", "inf"], ["--expires-in"]),
        (["enqueue", "--pool-key", "FC1", "--expires-in", "1e30"], ["--expires-in"]),
        (["enqueue", "--pool-key", "FC1", "--expires-in", "60", "--wait", "--timeout", "nan"], ["--timeout"]),
        (["extend", "k", "--expires-in", "nan"], ["--expires-in"]),
        (["extend", "k", "--expires-in", "-inf"], ["--expires-in"]),
        (["backfill", "/nonexistent.csv"], ["/nonexistent.csv"]),
        (["backfill", "README.md", "--chunk", "0"], ["--chunk"]),
        (["simulator", "--latency-ms", "nan"], ["--latency-ms"]),
        (["simulator", "--port", "99999"], ["--port"]),
        (["worker", "-c", "0"], ["--concurrency"]),
    ],
)
def test_junk_flags_give_one_line_and_exit_code_2(rt: Runtime, args: list[str], words: list[str]) -> None:
    """Issue 11: these printed tracebacks (dlq show, --since, --expires-in nan|inf|1e30)."""
    assert_refused(run(*args), *words)


def test_since_far_in_the_past_lists_every_entry(rt: Runtime) -> None:
    """--since 99999999999d was a traceback: it means 'since ever' and lists everything."""
    entry = dead_letter(rt)
    out = run("dlq", "list", "--since", "99999999999d", "--json")
    assert out.exit_code == 0, out.output
    assert [e["id"] for e in json.loads(out.stdout)] == [entry]


def test_an_unexpected_error_is_one_line_unless_axb_debug(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis unreachable: one line naming Redis; AXB_DEBUG=1 lets developers see the traceback."""
    # No retries: this is about how the error prints, not about riding out a failover (30 s).
    apply_env(monkeypatch, {"AXB_REDIS_URL": "redis://127.0.0.1:1/0", "AXB_REDIS_RETRY_S": "0"})
    assert_refused(run("dlq", "stats"), "Redis")
    monkeypatch.setenv("AXB_DEBUG", "1")
    out = run("dlq", "stats")
    assert out.exit_code == 1 and out.exception is not None and not isinstance(out.exception, SystemExit)


def test_a_dead_letter_with_markup_in_it_prints_as_text(rt: Runtime) -> None:
    """Rich markup in a key or message ([/x]) is shown as text, not parsed (it used to crash)."""
    dead_letter(rt, key="[/x] [bold]k")
    out = run("dlq", "list")
    assert out.exit_code == 0, out.output
    assert "[/x] [bold]k" in out.stdout.replace("\n", "")


JUNK = st.one_of(
    st.sampled_from(
        ["nan", "inf", "-inf", "1e30", "-1", "0", "", " ", "99999999999d", "１０", "[/x]", "13800138000",
         "2026-13-45 99:99:99", "0-0", "18446744073709551616-0", "-", "'", "\\", "%s", "{}"]
    ),
    st.text(max_size=10),
)  # fmt: skip
# Each entry: the command, then where the junk goes (None: a positional argument).
ENQUEUE = [
    "enqueue",
    "--pool-key",
    "FC100000001",
    "--phone-no-a",
    "13800000000",
    "--phone-no-b",
    "13900000001",
]
TARGETS: list[tuple[list[str], str | None]] = [
    ([*ENQUEUE, "--expires-in", "600"], flag)
    for flag in ["--expiration", "--expires-in", "--call-timeout", "--key", "--out-id", "--timeout"]
] + [
    (["result"], None),
    (["dlq", "list"], "--since"),
    (["dlq", "list"], "--limit"),
    (["dlq", "list"], "--code"),
    (["dlq", "show"], None),
    (["dlq", "replay"], None),
    (["dlq", "replay", "--all"], "--rate"),
    (["dlq", "purge", "--yes"], "--since"),
    (["dlq", "purge", "--yes"], None),
    (["extend", "k"], "--expires-in"),
    (["extend", "k"], "--expiration"),
    (["unbind"], None),
    (["unbind", "--pool-key", "FC100000001", "--secret-no", "17100000000"], "--subs-id"),
]  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(TARGETS), junk=JUNK)
def test_junk_at_any_flag_never_gives_a_traceback(
    rt: Runtime, target: tuple[list[str], str | None], junk: Any
) -> None:
    """Exit 0 (accepted), 2 (refused, one line) or 4 (not found); never a traceback or a raw number."""
    command, flag = target
    args = [*command, junk] if flag is None else [*command, flag, junk]
    out = run(*args)
    assert out.exception is None or isinstance(out.exception, SystemExit), (args, out.exception)
    assert out.exit_code in (0, 2, 4), (args, out.output)
    assert "Traceback" not in out.output
    if out.exit_code != 0:
        assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
    assert "13800138000" not in out.output
