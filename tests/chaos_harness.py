"""A ledger harness in the spirit of Jepsen's total-queue checker.

Every request a producer accepted must end exactly once: ``succeeded`` with exactly one binding
in the simulator's ledger, or ``dead_lettered`` (with none, or, for ``axb.AMBIGUOUS_OUTCOME``,
at most one, listed for reconciliation). The harness counts what is lost (never finished),
duplicated (more than one vendor binding for one key) and unresolved (ambiguous dead letters).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker.errors import AMBIGUOUS_OUTCOME
from worker.producer import enqueue_binds
from worker.runtime import Runtime

FULL = os.environ.get("AXB_CHAOS_FULL") == "1"

# Short limits so that a crashed worker's messages come back in seconds, not minutes.
CHAOS_ENV = {
    "AXB_HARD_TIME_LIMIT_S": "8",
    "AXB_SOFT_TIME_LIMIT_S": "6",
    "AXB_VISIBILITY_TIMEOUT_S": "15",
    "AXB_READ_TIMEOUT_S": "1",
    "AXB_CONNECT_TIMEOUT_S": "0.5",
    "AXB_INLINE_WAIT_MAX_S": "0.5",
    "AXB_RATE_LIMIT_QPS": "400",
    "AXB_RATE_LIMIT_BURST": "20",
    "AXB_WATCHDOG_S": "10",
}


def batch_size(small: int) -> int:
    return 10_000 if FULL else small


def budget(seconds: float, n: int) -> float:
    """How long to wait for a batch of ``n`` to finish: ``seconds`` plus the backlog's own drain
    time at a pessimistic 50 binds/s in the full runs (a fault must not add minutes, but 10,000
    binds take time to drain on two busy cores)."""
    return seconds + (n / 50 if FULL else 0)


@dataclass
class Report:
    accepted: int
    succeeded: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    silent_duplicates: int = 0
    unresolved: int = 0
    recover_s: float | None = None
    codes: Counter[str] = field(default_factory=Counter)

    def row(self, scenario: str) -> str:
        rec = f"{self.recover_s:.1f}" if self.recover_s is not None else "-"
        return (
            f"| {scenario} | {self.accepted} | {self.lost} | {self.silent_duplicates} | {self.unresolved} "
            f"| {rec} |"
        )


class ChaosRun:
    def __init__(self, rt: Runtime, simulator: Any, n: int, tag: str) -> None:
        self.rt = rt
        self.simulator = simulator
        self.n = n
        self.tag = tag
        self.keys: list[str] = []

    def enqueue(self, expiration: str, **kw: Any) -> list[str]:
        """Enqueue the run's binds (``kw``: more ``enqueue_binds`` arguments, e.g. callback_url)."""
        result = enqueue_binds(self.requests(expiration), **kw)
        assert not result.rejected
        self.keys = [h.key for h in result.handles]
        return self.keys

    def requests(self, expiration: str) -> list[dict[str, str]]:
        """The run's ``n`` bind requests (distinct numbers, OutId ``{tag}-{i}``)."""
        return [
            {
                "PoolKey": "FC100000001",
                "PhoneNoA": f"13{(i // 100_000_000) % 10 + 3}{i:08d}",
                "PhoneNoB": f"15{(i // 100_000_000) % 10}{i:08d}",
                "Expiration": expiration,
                "OutId": f"{self.tag}-{i}",
            }
            for i in range(self.n)
        ]

    def unfinished(self) -> int:
        done = 0
        for i in range(0, len(self.keys), 1000):
            done += sum(
                1 for r in self.rt.store.get_many(self.keys[i : i + 1000]) if r is not None and r.terminal
            )
        return len(self.keys) - done

    def wait(self, timeout_s: float, since: float | None = None) -> float | None:
        """Wait until every key is terminal; returns seconds since ``since`` (None if it timed out)."""
        start = since if since is not None else time.monotonic()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.unfinished() == 0:
                return time.monotonic() - start
            time.sleep(0.25)
        return None

    def diagnose(self) -> dict[str, Any]:
        """Where the unfinished keys are stuck (for a failing run's message)."""
        from worker import keys as k

        r = self.rt.redis
        out: Counter[str] = Counter()
        for key, rec in zip(self.keys, self.rt.store.get_many(self.keys), strict=True):
            if rec is None or rec.terminal:
                continue
            where = [rec.status]
            if r.zscore(k.delayed(self.rt.settings.queue), key) is not None:
                where.append("delayed")
            if r.zscore(k.delayed_claimed(self.rt.settings.queue), key) is not None:
                where.append("claimed")
            if r.exists(k.bind_lease(key)):
                where.append("leased")
            if rec.inflight:
                where.append("inflight")
            where.append(f"starts={rec.starts}")
            out[" ".join(where)] += 1
        return {
            "stuck": dict(out),
            "queue": r.llen(self.rt.settings.queue),
            "unacked": r.hlen("unacked"),
            "unacked_mutex": r.exists("unacked_mutex"),
        }

    def check(self, recover_s: float | None = None) -> Report:
        rep = Report(accepted=len(self.keys), recover_s=recover_s)
        by_out = self.simulator.ledger()["bindings_by_out_id"]
        for i in range(0, len(self.keys), 1000):
            part = self.keys[i : i + 1000]
            for key, rec in zip(part, self.rt.store.get_many(part), strict=True):
                bindings = by_out.get(key, [])
                if len(bindings) > 1:
                    rep.duplicated += 1
                if rec is None or not rec.terminal:
                    rep.lost += 1
                    continue
                if rec.status == "succeeded":
                    rep.succeeded += 1
                    subs = (rec.result or {}).get("SubsId")
                    if len(bindings) != 1 or bindings[0] != subs:
                        rep.silent_duplicates += 1
                else:
                    rep.dead_lettered += 1
                    rep.codes[rec.code] += 1
                    if rec.code == AMBIGUOUS_OUTCOME:
                        rep.unresolved += 1
                        if len(bindings) > 1:
                            rep.silent_duplicates += 1
                    elif bindings:
                        rep.silent_duplicates += 1
        return rep
