"""Schemathesis against the real `axb api` process and its own /openapi.json: every check, with
a token holding every scope; no 5xx, no answer that breaks the schema. Bounded (few examples
per operation, a fixed seed) so that it takes seconds in `make test`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.api_fixture import ApiProcess, api_pipeline_fixture, api_server_fixture, make_token
from tests.pipeline_fixture import ROOT

api_server = api_server_fixture()
pipeline = api_pipeline_fixture()

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = int(os.environ.get("AXB_SCHEMATHESIS_EXAMPLES", "15"))


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_schema(
    api_server: ApiProcess, redis_url: str, pipeline: Any, tmp_path: Path
) -> None:
    """`schemathesis run --checks all` passes against /openapi.json with a full-scope token."""
    token = make_token(redis_url, "schemathesis", "bind,read,numbers,operate")
    exe = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [
            str(exe),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{api_server.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "14",
            "--workers",
            "2",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--output-sanitize",
            "true",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks"},
        cwd=tmp_path,
        check=False,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    assert "No issues found" in out or "passed" in out, out[-3000:]
