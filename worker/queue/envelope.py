"""What a queue item must look like before the worker takes it: :func:`check_envelope`.

Our producers put kombu/Celery messages (protocol 2) on Redis lists. Anyone with access to Redis
can put anything else there (``redis-cli LPUSH axb.bind 'not json'``). Celery and kombu were
written for trusted brokers: some junk kills the worker's consumer ("Unrecoverable error:
JSONDecodeError"), some loops its connection, some is dropped with a log line. So every item is
checked here, from its raw bytes, for everything kombu and Celery's consumer read from it before a
task runs. An item that fails is dead-lettered as ``axb.MALFORMED_MESSAGE`` by
:mod:`worker.queue.intake` and never reaches them.

The task's own arguments (one idempotency key, a list of keys) are checked by the task itself
(tasks/bind.py): that is about our tasks, not about the message format.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection
from typing import Any

from kombu.utils import json as kombu_json

from worker.deadletters import RAW_KEEP_CHARS

# Our messages carry idempotency keys only: an ``axb.bind_many`` of AXB_BATCH_SIZE (at most 500)
# keys of at most 200 characters is under 200 KiB with its headers. Anything bigger is not ours,
# and is refused before it is parsed.
MAX_MESSAGE_BYTES = 1 << 20

JSON_MIME = "application/json"


class MalformedMessage(ValueError):
    """A queue item the worker cannot run; ``str()`` says why (no personal data in it)."""


def check_envelope(raw: bytes, *, task_names: Collection[str], accept: Collection[str]) -> dict[str, Any]:
    """The parsed envelope of ``raw``, or :class:`MalformedMessage` naming what is wrong.

    ``task_names`` are the registered tasks; ``accept`` the accepted content types (MIME).
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"oversized: {len(raw)} bytes, more than the {MAX_MESSAGE_BYTES} accepted")
    try:
        # As kombu parses it: its JSON, with its type hooks ({"__type__": "uuid", ...}), whose
        # errors on junk are not all ValueErrors; deep nesting raises RecursionError.
        env = kombu_json.loads(raw)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise MalformedMessage(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(env, dict):
        raise MalformedMessage(f"not a message envelope: a JSON {type(env).__name__}, not an object")
    _check_properties(env.get("properties"))
    headers = env.get("headers")
    if not isinstance(headers, dict):
        raise MalformedMessage("no headers (not a Celery protocol 2 message)")
    task = headers.get("task")
    if not isinstance(task, str) or not task:
        raise MalformedMessage("headers.task missing (not a Celery protocol 2 message)")
    if task not in task_names:
        raise MalformedMessage(f"unknown task {task[:100]!r}")
    if not isinstance(headers.get("id"), str) or not headers["id"]:
        raise MalformedMessage("headers.id missing")
    _check_scheduling(headers)
    content_type = env.get("content-type")
    if content_type not in accept:
        shown = str(content_type)[:100]
        raise MalformedMessage(f"content type {shown!r} refused (accepted: {', '.join(sorted(accept))})")
    if env.get("content-encoding") not in ("utf-8", None):
        raise MalformedMessage(f"content encoding {str(env.get('content-encoding'))[:50]!r} refused")
    if headers.get("compression") is not None:
        raise MalformedMessage("compressed bodies are refused (our producers never compress)")
    body = decode_body(env)
    if content_type == JSON_MIME:
        _check_json_body(body)
    return env


def decode_body(env: dict[str, Any]) -> bytes:
    """The body bytes of a parsed envelope (base64 as our producers send it, or plain text)."""
    body = env.get("body")
    if not isinstance(body, str):
        raise MalformedMessage("body missing or not a string")
    encoding = env["properties"].get("body_encoding")
    if encoding == "base64":
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedMessage("body is not valid base64") from None
    if encoding is None:
        return body.encode("utf-8", "surrogatepass")
    raise MalformedMessage(f"body encoding {str(encoding)[:50]!r} refused")


def _check_properties(props: Any) -> None:
    if not isinstance(props, dict):
        raise MalformedMessage("no properties")
    if not isinstance(props.get("delivery_tag"), str) or not props["delivery_tag"]:
        raise MalformedMessage("properties.delivery_tag missing")
    info = props.get("delivery_info")
    named = isinstance(info, dict) and all(isinstance(info.get(k), str) for k in ("exchange", "routing_key"))
    if not named:
        raise MalformedMessage("properties.delivery_info must name an exchange and a routing_key")
    priority = props.get("priority")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        raise MalformedMessage("properties.priority must be an integer")


def _check_scheduling(headers: dict[str, Any]) -> None:
    """The headers Celery's consumer parses itself (an error there stops the consumer)."""
    from celery.utils.time import maybe_iso8601

    for name in ("eta", "expires"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            maybe_iso8601(value)
        except (AttributeError, ValueError, TypeError):
            raise MalformedMessage(f"headers.{name} is not a date") from None
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, list)
        and len(limits) == 2
        and all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in limits)
    ):
        raise MalformedMessage("headers.timelimit must be [hard, soft] seconds or null")
    retries = headers.get("retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)):
        raise MalformedMessage("headers.retries must be an integer")


def _check_json_body(body: bytes) -> None:
    try:
        decoded = kombu_json.loads(body)  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise MalformedMessage(f"body is not JSON ({type(exc).__name__})") from None
    if not (
        isinstance(decoded, list)
        and len(decoded) == 3
        and isinstance(decoded[0], list)
        and isinstance(decoded[1], dict)
        and isinstance(decoded[2], dict)
    ):
        raise MalformedMessage("body is not [args, kwargs, embed]")


_BASE64_BODY = re.compile(r'("body":\s*")([A-Za-z0-9+/]{4,}={0,2})(")?')


def readable(raw: bytes, limit_chars: int = 2 * RAW_KEEP_CHARS) -> str:
    """The first ``limit_chars`` of ``raw`` as text a person can read in a dead letter, with a
    base64 body decoded (also when the item is cut short), so that masking sees the numbers in
    it. Not masked here."""
    text = raw[:limit_chars].decode("utf-8", "backslashreplace")

    def decoded(m: re.Match[str]) -> str:
        b64 = m.group(2)
        if m.group(3) is None:  # cut at the limit: decode what is there
            b64 = b64.rstrip("=")[: len(b64.rstrip("=")) // 4 * 4]
        try:
            body = base64.b64decode(b64, validate=True).decode("utf-8", "backslashreplace")
        except (binascii.Error, ValueError):
            return m.group(0)
        shown = json.dumps(body, ensure_ascii=False)[1:-1]
        return f"{m.group(1)}(base64, decoded) {shown}{m.group(3) or ''}"

    return _BASE64_BODY.sub(decoded, text, count=1)
