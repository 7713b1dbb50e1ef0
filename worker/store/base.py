"""The store's connection: its Redis, its registered scripts, the terminal-write tail, the reads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from worker import keys
from worker.lua import Scripts
from worker.replication import ReplicaWait
from worker.sealing import seal
from worker.store.records import BindRecord

# Every script the store runs (worker/store/lua/<name>.lua).
SCRIPT_NAMES = (
    "create_many",
    "mark_published",
    "start",
    "begin_attempt",
    "unbegin",
    "succeed",
    "schedule",
    "dead_letter",
    "release_lease",
    "park_line",
    "create_op",
    "try_cancel",
    "op_succeed",
)


class StoreBase:
    """What every part of :class:`~worker.store.BindStore` shares; every mutation is atomic."""

    # The record of a completion callback's delivery lives this long at first (worker.callbacks
    # keeps it longer while it retries).
    CALLBACK_TTL_S = 3 * 86_400

    def __init__(
        self,
        client: redis.Redis,
        queue: str = "axb.bind",
        watch_s: float = 60.0,
        wait: ReplicaWait | None = None,
    ) -> None:
        self.r = client
        self.wait = wait or ReplicaWait()  # WAIT after the writes that carry a promise
        self.queue = queue
        self.delayed_key = keys.delayed(queue)
        self.watch_key = keys.watch(queue)
        self.watch_ms = int(watch_s * 1000)
        self.wake_key = keys.delay_wake(queue)
        self.scripts = Scripts(client, *SCRIPT_NAMES)

    # --- the tail of every script that makes a record terminal (lua/finished.lua) -------------

    def _finish_keys(self, key: str, ts: int) -> list[str]:
        return [self.wake_key, keys.bind_record(keys.callback_job(key, ts))]

    def _finish_args(self, key: str, ts: int) -> list[Any]:
        return [keys.done_channel(key), keys.callback_job(key, ts), ts + self.watch_ms, self.CALLBACK_TTL_S]

    def _record_keys(self, key: str) -> list[str]:
        """The first KEYS of the scripts that begin or end work on a record: record, history,
        delayed, watch."""
        return [keys.bind_record(key), keys.bind_history(key), self.delayed_key, self.watch_key]

    def _run(
        self, name: str, script_keys: Sequence[Any], args: Sequence[Any], *, durable: bool = True
    ) -> Any:
        """Run script ``name``; ``durable``: then WAIT for the replicas (a write carrying a promise)."""
        if durable:
            return self.wait.script(self.r, self.scripts[name], script_keys, args)
        return self.scripts.run(name, script_keys, args)

    # --- reads -------------------------------------------------------------------------------

    def get(self, key: str) -> BindRecord | None:
        data = self.r.hgetall(keys.bind_record(key))
        return BindRecord.from_reply(data) if data else None

    def get_many(self, key_list: Sequence[str]) -> list[BindRecord | None]:
        pipe = self.r.pipeline(transaction=False)
        for k in key_list:
            pipe.hgetall(keys.bind_record(k))
        return [BindRecord.from_reply(data) if data else None for data in pipe.execute()]

    def history(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(keys.bind_history(key), 0, -1)]

    def delayed_due_at(self, key: str) -> float | None:
        score = self.r.zscore(self.delayed_key, key)
        return float(score) if score is not None else None


def hist_json(h: dict[str, Any] | None) -> str:
    """A history entry as a script argument ('' for none)."""
    return json.dumps(h, separators=(",", ":")) if h else ""


def succeeded_args(
    result_json: str, request_id: str, ts: int, expire_at_s: int, hist: dict[str, Any] | None
) -> list[Any]:
    """The first ARGV of the scripts that mark a record succeeded (succeeded.lua)."""
    return [seal(result_json), request_id, ts, expire_at_s, hist_json(hist)]


def callback_fields(row: dict[str, Any]) -> list[str]:
    """A row's ``callback_url`` and ``callback_numbers`` ('1'/'0') as stored; none without a URL."""
    url = row.get("callback_url")
    return [url, "1" if row.get("callback_numbers") else "0"] if url else []
