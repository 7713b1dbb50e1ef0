"""``axb backfill --wait``: wait for every enqueued key to end, and count how they ended."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from worker.backfill.progress import ProgressBar

WAIT_PAGE = 1000
WAIT_POLL_S = 0.2


def wait_all(key_list: list[str], timeout_s: float | None, progress: bool) -> dict[str, Any]:
    from worker.runtime import get_runtime

    store = get_runtime().store
    remaining = list(dict.fromkeys(key_list))
    total = len(remaining)
    statuses: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    deadline_s = None if timeout_s is None else time.monotonic() + timeout_s
    bar = ProgressBar(None, enabled=progress, total=total, label="binding")
    try:
        while remaining:
            still: list[str] = []
            for i in range(0, len(remaining), WAIT_PAGE):
                part = remaining[i : i + WAIT_PAGE]
                for key, rec in zip(part, store.get_many(part), strict=True):
                    if rec is None:
                        statuses["missing"] += 1
                    elif rec.terminal:
                        statuses[rec.status] += 1
                        if rec.status == "dead_lettered":
                            codes[rec.code] += 1
                    else:
                        still.append(key)
            remaining = still
            bar.update(total - len(remaining))
            if not remaining:
                break
            if deadline_s is not None and time.monotonic() > deadline_s:
                break
            time.sleep(WAIT_POLL_S)
    finally:
        bar.close()
    return {
        "succeeded": statuses["succeeded"],
        "dead_lettered": statuses["dead_lettered"],
        "cancelled": statuses["cancelled"],
        "unfinished": len(remaining),
        "dead_letter_codes": dict(codes),
    }
