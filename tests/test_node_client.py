"""A client in another language: examples/node/trip.mjs (Node's built-in fetch and crypto only)
runs the trip lifecycle against the real `axb api` and verifies callback signatures.

Skipped when `node` is not on the PATH (.ci/run installs nodejs)."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import shutil
import subprocess
import time
from typing import Any

import pytest

from tests.api_fixture import ApiProcess, api_pipeline_fixture, api_server_fixture, make_token
from tests.pipeline_fixture import ROOT

api_server = api_server_fixture()
pipeline = api_pipeline_fixture()

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not on the PATH")
EXAMPLES = ROOT / "examples" / "node"
# The worker's callback delivery (h14-callbacks); without it the trip runs without callbacks.
DELIVERS_CALLBACKS = importlib.util.find_spec("worker.callbacks") is not None


def node(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, *args], capture_output=True, text=True, timeout=60, env=env, input=stdin, check=False
    )


def python_signature(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def test_node_runs_the_trip_lifecycle_bind_wait_extend_unbind(
    api_server: ApiProcess, redis_url: str, celery_worker: Any, simulator: Any
) -> None:
    """trip.mjs: bind (202, then 200 again), ?wait to bound, extend, unbind; callbacks verified."""
    token = make_token(redis_url, "node", "bind,read,operate")
    env = {
        "PATH": "/usr/bin:/bin",
        "AXB_API_URL": api_server.url,
        "AXB_API_TOKEN": token,
        "AXB_CALLBACK_SECRET": api_server.env["AXB_CALLBACK_SECRET"],
    }
    args = [str(EXAMPLES / "trip.mjs"), "--phone-no-a", "13812345678", "--phone-no-b", "13987654321"]
    if not DELIVERS_CALLBACKS:
        args.append("--no-callbacks")
    run = node(*args, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    steps = [s["step"] for s in summary["steps"]]
    assert steps[:3] == ["bind", "extend", "unbind"]
    if DELIVERS_CALLBACKS:
        assert steps[3:] == ["callback"] * 3 and all(s["verified"] for s in summary["steps"][3:])
    assert simulator.bindings(live_only=True) == []
    assert "13812345678" not in run.stdout


def test_node_verifies_a_signature_computed_by_python_and_refuses_a_tampered_one() -> None:
    """signature.mjs accepts HMAC-SHA256 over "<t>.<raw body>" made in Python, and nothing else."""
    secret, body = "test-callback-secret", json.dumps({"key": "trip-1", "status": "succeeded"})
    header = python_signature(secret, body.encode(), int(time.time()))
    script = str(EXAMPLES / "signature.mjs")
    ok = node(script, stdin=json.dumps({"secret": secret, "header": header, "body": body}))
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"verified": True}
    tampered = node(script, stdin=json.dumps({"secret": secret, "header": header, "body": body + " "}))
    assert tampered.returncode == 1
    old = python_signature(secret, body.encode(), int(time.time()) - 3600)
    stale = node(script, stdin=json.dumps({"secret": secret, "header": old, "body": body}))
    assert stale.returncode == 1
    wrong = node(script, stdin=json.dumps({"secret": "other", "header": header, "body": body}))
    assert wrong.returncode == 1
