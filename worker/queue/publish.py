"""The Celery wire format: one task message per key, pushed onto the queue's Redis list.

Messages are written the way kombu's Redis transport writes them (protocol 2 task messages,
``LPUSH`` onto the queue's list) but many per pipelined round trip: kombu builds a Redis client
and a producer per ``send_task``, which capped bulk enqueues at about 900 messages a second.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from worker import keys
from worker.masking import mask_text
from worker.settings import Settings

# Celery task message protocol 2: the body is (args, kwargs, embed).
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"


class Publisher:
    """Publishes keys on ``settings.queue`` through ``client`` (``AXB_BATCH_SIZE`` keys a message)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings

    def publish(self, key_list: Sequence[str], action: str | None = None, *, batch: bool = False) -> None:
        """Put one Celery message per key on the queue (task id derived from the key).

        Without ``action`` each key goes to the task its name calls for (``axb.bind``, or
        ``axb.unbind`` / ``axb.extend`` for lifecycle operations: :func:`keys.action_of`), so the
        delay queue and the watchdog publish every kind of record correctly.

        A failed round trip is retried whole; a message pushed twice is harmless (one delivery
        holds the lease; a finished key is never worked again).

        ``batch``: bind keys go up to ``AXB_BATCH_SIZE`` per message (task ``axb.bind_many``),
        which takes the engine's per-message cost off each bind; lifecycle operations still go
        one per message. The member keys' task ids travel in the message's ``axb_task_ids``
        header, where the watchdog looks for them.
        """
        size = self.settings.batch_size
        grouping = batch and size > 1 and action in (None, "bind")
        binds: list[str] = []
        singles: list[str] = []
        for k in key_list:
            (binds if grouping and keys.action_of(k) == "bind" else singles).append(k)
        messages = [
            self._message(group[0], "bind") if len(group) == 1 else self._batch_message(group)
            for group in (binds[i : i + size] for i in range(0, len(binds), size))
        ]
        messages.extend(self._message(k, action or keys.action_of(k)) for k in singles)
        for i in range(0, len(messages), 2000):
            self._push(messages[i : i + 2000])

    def _push(self, messages: list[str]) -> None:
        delay = 0.2
        for attempt in range(20):
            try:
                pipe = self.redis.pipeline(transaction=False)
                for m in messages:
                    pipe.lpush(self.settings.queue, m)
                pipe.execute()
                return
            except (redis.ConnectionError, redis.TimeoutError):
                if attempt == 19:
                    raise
                time.sleep(delay)
                delay = min(3.0, delay + 0.5)

    def _message(self, key: str, action: str) -> str:
        return self._envelope(f"axb.{action}", keys.task_id_for(key, action), [key])

    def _batch_message(self, key_list: Sequence[str]) -> str:
        group = list(key_list)
        ids = [keys.task_id_for(k, "bind") for k in group]
        return self._envelope("axb.bind_many", str(uuid.uuid4()), [group], extra={"axb_task_ids": ids})

    def _envelope(self, task: str, tid: str, argv: list[Any], extra: dict[str, Any] | None = None) -> str:
        args = json.dumps([argv, {}, _EMBED])
        argsrepr = mask_text(repr(argv))
        if len(argsrepr) > 1000:
            argsrepr = argsrepr[:1000] + "…"
        return json.dumps(
            {
                "body": base64.b64encode(args.encode()).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": {
                    "lang": "py",
                    "task": task,
                    "id": tid,
                    "shadow": None,
                    "eta": None,
                    "expires": None,
                    "group": None,
                    "group_index": None,
                    "retries": 0,
                    "timelimit": [None, None],
                    "root_id": tid,
                    "parent_id": None,
                    "argsrepr": argsrepr,
                    "kwargsrepr": "{}",
                    "origin": _ORIGIN,
                    "ignore_result": True,
                    "replaced_task_nesting": 0,
                    "stamped_headers": None,
                    "stamps": {},
                    **(extra or {}),
                },
                "properties": {
                    "correlation_id": tid,
                    "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": self.settings.queue},
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        )
