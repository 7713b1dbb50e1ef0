"""Replaying dead letters: each entry's key goes back to ``pending`` and onto the queue."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TypedDict

import redis

from worker import errors, keys, lua
from worker.deadletters.entry import DeadLetter
from worker.sealing import seal


class ReplayResult(IntEnum):
    """What the replay script returns for one entry."""

    REPLAYED = 1  # the record is back to pending
    ALREADY_LIVE = 2  # the record was pending or retrying already: published again all the same
    SUCCEEDED_SINCE = 3  # nothing to do: the entry is removed


NEEDS_FORCE = frozenset({"axb.AMBIGUOUS_OUTCOME"})


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


class ReplayOptions(TypedDict, total=False):
    """The keyword options of :func:`replay` (for :meth:`worker.deadletters.DeadLetters.replay`)."""

    rate_qps: float
    force: bool
    result_ttl_extra_s: int
    queue: str
    watch_s: float


def replay(
    client: redis.Redis,
    entries: list[DeadLetter],
    publish: Callable[[list[str]], None],
    *,
    rate_qps: float = 50.0,
    force: bool = False,
    result_ttl_extra_s: int = 86_400,
    queue: str = "axb.bind",
    watch_s: float = 60.0,
) -> ReplayReport:
    """Re-enqueue each entry under its own key, at most ``rate_qps`` a second.

    The record goes back to ``pending`` (its history kept), the message is published, and
    only then is the entry deleted from the stream: a crash in between leaves the entry
    where it was. Entries whose outcome is unknown (``axb.AMBIGUOUS_OUTCOME``) need
    ``force``: replaying them may make a second binding.
    """
    report = ReplayReport()
    script = client.register_script(lua.source("replay_dead_letter"))
    interval = 1.0 / rate_qps if rate_qps > 0 else 0.0
    for dl in entries:
        if dl.code == errors.MALFORMED_MESSAGE or not dl.key or not dl.request:
            why = "a queue item that could not be run; nothing to replay (see `axb dlq show`)"
            report.skipped.append((dl.id, f"{dl.code}: {why}"))
            continue
        if dl.code in NEEDS_FORCE and not force:
            report.skipped.append((dl.id, f"{dl.code}: reconcile first, then replay with --force"))
            continue
        started = time.monotonic()
        expires_ms = int(dl.request_expires_ms())
        now_ms = int(time.time() * 1000)
        ttl_s = max(3600, (expires_ms - now_ms) // 1000 + result_ttl_extra_s)
        hist = json.dumps({"at": now_ms, "code": "axb.REPLAYED", "from": dl.id, "attempt": 0})
        res = script(
            keys=[keys.bind_record(dl.key), keys.bind_history(dl.key), keys.watch(queue)],
            args=[
                dl.key,
                dl.task_id or keys.task_id_for(dl.key),
                seal(json.dumps(dl.request, ensure_ascii=False)),
                dl.pool,
                now_ms,
                expires_ms,
                ttl_s,
                expires_ms - 60_000,
                dl.action,
                dl.id,
                hist,
                now_ms + int(watch_s * 1000),
            ],
        )
        if ReplayResult(int(res)) is ReplayResult.SUCCEEDED_SINCE:
            client.xdel(keys.DEAD_LETTERS, dl.id)
            report.skipped.append((dl.id, "the key has succeeded since; entry removed"))
            continue
        publish([dl.key])
        client.hset(keys.bind_record(dl.key), "published", 1)
        client.xdel(keys.DEAD_LETTERS, dl.id)
        report.replayed.append(dl.id)
        spare = interval - (time.monotonic() - started)
        if spare > 0:
            time.sleep(spare)
    return report
