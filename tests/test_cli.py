"""The ``axb`` command line: direct calls, enqueue, result, dead letters; numbers masked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from tests.pipeline_fixture import apply_env
from tests.test_pipeline import expiration
from worker.cli import main
from worker.runtime import Runtime

A, B = "13812345678", "13987654321"


def bind_args(**over: str) -> list[str]:
    args = {
        "--pool-key": "FC100000001",
        "--phone-no-a": A,
        "--phone-no-b": B,
        "--expiration": expiration(),
        "--out-id": "cli-1",
    }
    args.update(over)
    return [x for kv in args.items() for x in kv]


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_call_bind_prints_the_secret_bind_dto_with_numbers_masked(pipeline: Runtime, simulator: Any) -> None:
    """A direct signed call against the simulator binds and prints masked JSON."""
    out = run("call", "bind", *bind_args())
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert body["Code"] == "OK" and body["SecretBindDTO"]["SubsId"]
    assert "****" in body["SecretBindDTO"]["SecretNo"]
    assert A not in out.output and B not in out.output
    assert len(simulator.bindings_for("cli-1")) == 1


def test_call_bind_shows_numbers_only_when_asked(pipeline: Runtime, simulator: Any) -> None:
    """--show-numbers prints the real X number."""
    out = run("call", "bind", *bind_args(), "--show-numbers")
    assert out.exit_code == 0
    (binding,) = simulator.bindings()
    assert json.loads(out.stdout)["SecretBindDTO"]["SecretNo"] == binding["secret_no"]


def test_call_bind_refuses_a_bad_number_locally_with_the_vendor_code(
    pipeline: Runtime, simulator: Any
) -> None:
    """An illegal number never reaches the vendor; the exit code is 2 and the code is named."""
    out = run("call", "bind", *bind_args(**{"--phone-no-a": "1381234567"}))
    assert out.exit_code == 2
    assert "isv.MOBILE_NUMBER_ILLEGAL" in out.output and "PhoneNoA" in out.output
    assert "1381234567" not in out.output
    assert simulator.ledger()["calls"] == []


@pytest.mark.parametrize("signature", ["v1", "v3"])
def test_call_bind_with_a_wrong_secret_exits_non_zero(
    pipeline: Runtime, simulator: Any, monkeypatch: pytest.MonkeyPatch, signature: str
) -> None:
    """A wrong secret: SignatureDoesNotMatch, exit 1, and the secret is never printed."""
    apply_env(monkeypatch, {"AXB_ACCESS_KEY_SECRET": "not-the-secret", "AXB_SIGNATURE": signature})
    out = run("call", "bind", *bind_args())
    assert out.exit_code == 1
    assert json.loads(out.stdout)["Code"] == "SignatureDoesNotMatch"
    assert "not-the-secret" not in out.output
    assert A not in out.output and B not in out.output  # the echoed string-to-sign is masked


def test_enqueue_wait_result_and_dlq_list(celery_worker: Any, pipeline: Runtime, simulator: Any) -> None:
    """enqueue --wait --json, result KEY --json, and dlq list --json for a terminal failure."""
    out = run("enqueue", *bind_args(), "--wait", "--json")
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert body["status"] == "succeeded" and body["key"] == "cli-1" and body["SecretBindDTO"]["SubsId"]
    assert A not in out.output

    res = run("result", "cli-1", "--json")
    assert json.loads(res.stdout)["SecretBindDTO"] == body["SecretBindDTO"]

    bad = run("enqueue", *bind_args(**{"--pool-key": "FC999999999", "--out-id": "cli-2"}), "--wait", "--json")
    assert bad.exit_code == 1 and json.loads(bad.stdout)["status"] == "dead_lettered"

    dl = run("dlq", "list", "--json")
    (entry,) = json.loads(dl.stdout)
    assert {"key", "code", "message", "request_id", "attempts"} <= set(entry)
    assert entry["key"] == "cli-2" and entry["code"] == "isv.POOLKEY_NOT_EXISTS" and entry["attempts"] == 1
    assert A not in dl.output and entry["request"]["PhoneNoA"] == "138****5678"
    only = json.loads(run("dlq", "list", "--json", "--code", "isv.OTHER").stdout)
    assert only == []


def test_enqueue_refuses_bad_input_with_exit_code_2(pipeline: Runtime) -> None:
    """A bad field: exit 2, field and vendor code named, nothing stored."""
    out = run("enqueue", *bind_args(**{"--call-timeout": "500"}), "--json")
    assert out.exit_code == 2 and "CallTimeout" in out.output and "isv.INVALID_PARAMETERS" in out.output
    assert pipeline.store.get("cli-1") is None


def test_result_of_an_unknown_key_exits_4(pipeline: Runtime) -> None:
    """No record: a clear message and exit code 4."""
    out = run("result", "nope")
    assert out.exit_code == 4
