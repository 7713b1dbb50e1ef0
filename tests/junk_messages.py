"""Queue items a worker cannot run, one of each kind (tests/test_poison.py, tests/test_chaos_junk.py).

Each is the raw bytes a client could ``LPUSH`` onto a queue; the envelopes are built like the
ones Celery publishes (see :func:`envelope`), with one thing wrong.
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from typing import Any

# A phone number inside the junk: it must come out masked in the dead letter.
JUNK_PHONE = "13800138000"

# Why each kind is refused, as the dead letter says it.
REASONS = {
    "not_json": "not JSON",
    "json_array": "not a message envelope",
    "bad_base64": "body is not valid base64",
    "unknown_task": "unknown task 'axb.no_such_task'",
    "pickle": "content type 'application/x-python-serialize' refused",
    "no_properties": "no properties",
    "body_wrong_shape": "body is not [args, kwargs, embed]",
    "oversized": "oversized",
}


def envelope(
    queue: str,
    body: Any,
    *,
    task: str = "axb.bind",
    content_type: str = "application/json",
    encode: bool = True,
    properties: bool = True,
) -> dict[str, Any]:
    """A kombu/Celery message as the Redis transport stores it (protocol 2)."""
    task_id = str(uuid.uuid4())
    raw = json.dumps(body).encode() if encode else body
    env: dict[str, Any] = {
        "body": base64.b64encode(raw).decode() if isinstance(raw, bytes) else raw,
        "content-encoding": "utf-8" if content_type == "application/json" else "binary",
        "content-type": content_type,
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "retries": 0},
    }
    if properties:
        env["properties"] = {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
    return env


def junk_messages(queue: str, oversized_bytes: int = 1_100_000) -> dict[str, bytes]:
    """Every kind of junk, by name."""
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    good_body = [[f"key-{JUNK_PHONE}"], {}, embed]

    def dumped(env: dict[str, Any]) -> bytes:
        return json.dumps(env).encode()

    bad_b64 = envelope(queue, good_body)
    bad_b64["body"] = f"not base64 at all {JUNK_PHONE} !!!"
    return {
        "not_json": f"not json {JUNK_PHONE}".encode(),
        "json_array": b"[1,2,3]",
        "bad_base64": dumped(bad_b64),
        "unknown_task": dumped(envelope(queue, good_body, task="axb.no_such_task")),
        "pickle": dumped(
            envelope(
                queue,
                pickle.dumps(((JUNK_PHONE,), {}, {})),
                content_type="application/x-python-serialize",
                encode=False,
            )
        ),
        "no_properties": dumped(envelope(queue, good_body, properties=False)),
        "body_wrong_shape": dumped(envelope(queue, {"phone": JUNK_PHONE})),
        "oversized": dumped(envelope(queue, [[JUNK_PHONE + "x" * oversized_bytes], {}, {}])),
    }
