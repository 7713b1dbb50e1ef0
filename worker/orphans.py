"""The possible-orphans ledger: copies of a bind that may have made a binding nobody holds.

An ``axb.AMBIGUOUS_OUTCOME`` means the vendor saw a request and its answer was lost. Binding
the key again (``AXB_ON_AMBIGUOUS=rebind``, or "rebind" on the console) may leave the first
copy's binding alive at the vendor, holding one of X's A-B slots until its Expiration. Each
such first copy is recorded here: its key, RequestId, pool, when it was sent and when its
binding expires. No phone number is stored. An entry is known by the key and the first copy's
nonce (or, without one, its RequestId): recording the same copy again, after a crash or from the
console, keeps one entry and counts it once. Recording also marks the bind's record
``possible_orphan``, which its result shows. An entry lives in Redis until the binding's
Expiration (at most :data:`MAX_TTL_S`, at least :data:`MIN_TTL_S`), then goes by itself.

    record_possible_orphan(redis, key="trip-1", request_id="A1B2...", pool="FC1",
                           sent_at_ms=1764470000000, expires_at_ms=1764473600000)
    for o in list_possible_orphans(redis):
        print(o.key, o.request_id, o.expires_at_ms)

Read by ``axb orphans list`` and the console's orphans page; counted by
``axb_possible_orphans_total``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import Counter

from worker import keys, lua
from worker.masking import mask_obj
from worker.redis_text import as_text

MIN_TTL_S = 3600  # an already expired binding is still listed for an hour
MAX_TTL_S = 366 * 86_400  # the vendor's Expiration is within a year

POSSIBLE_ORPHANS = Counter(
    "axb_possible_orphans", "First copies of ambiguous binds that may have left a binding at the vendor"
)


@dataclass(frozen=True)
class PossibleOrphan:
    """One ledger entry: the first copy of bind ``key`` that may still hold a binding."""

    key: str
    request_id: str
    pool: str
    sent_at_ms: int
    expires_at_ms: int
    note: str = ""

    def as_dict(self, *, show_numbers: bool = False) -> dict[str, Any]:
        out = asdict(self)
        return out if show_numbers else mask_obj(out)


def orphan_id(key: str, copy: str) -> str:
    """One id per (key, first copy: its nonce, else its RequestId): recording the same copy
    twice keeps one entry."""
    return hashlib.sha256(f"{key}\0{copy}".encode()).hexdigest()[:24]


def record_possible_orphan(
    redis: Any,
    *,
    key: str,
    request_id: str,
    pool: str,
    sent_at_ms: int,
    expires_at_ms: int,
    note: str = "",
    nonce: str = "",
    now_ms: int | None = None,
) -> PossibleOrphan:
    """Add one possible orphan to the ledger and mark the bind's record ``possible_orphan``
    (idempotent per key and first copy: ``nonce``, else ``request_id``), and count it once."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    ttl_s = min(MAX_TTL_S, max(MIN_TTL_S, (expires_at_ms - now) // 1000))
    oid = orphan_id(key, nonce or request_id)
    entry = PossibleOrphan(key, request_id, pool, int(sent_at_ms), int(expires_at_ms), note)
    new = redis.register_script(lua.source("possible_orphan"))(
        keys=[keys.possible_orphan(oid), keys.POSSIBLE_ORPHANS, keys.bind_record(key)],
        args=[oid, key, request_id, pool, entry.sent_at_ms, entry.expires_at_ms, note, ttl_s],
    )
    if int(new):
        POSSIBLE_ORPHANS.inc()
    return entry


def list_possible_orphans(
    redis: Any, *, limit: int = 1000, now_ms: int | None = None
) -> list[PossibleOrphan]:
    """The ledger, soonest Expiration first; index entries whose record has expired are dropped."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    # Entries past their Expiration by more than MIN_TTL_S have gone from Redis: forget their ids.
    redis.zremrangebyscore(keys.POSSIBLE_ORPHANS, "-inf", now - MIN_TTL_S * 1000)
    ids = [as_text(i) for i in redis.zrange(keys.POSSIBLE_ORPHANS, 0, limit - 1)]
    pipe = redis.pipeline(transaction=False)
    for oid in ids:
        pipe.hgetall(keys.possible_orphan(oid))
    out: list[PossibleOrphan] = []
    gone: list[str] = []
    for oid, raw in zip(ids, pipe.execute(), strict=True):
        f = {as_text(k): as_text(v) for k, v in (raw or {}).items()}
        if not f.get("key"):
            gone.append(oid)
            continue
        out.append(
            PossibleOrphan(
                key=f["key"],
                request_id=f.get("request_id", ""),
                pool=f.get("pool", ""),
                sent_at_ms=int(f.get("sent_at") or 0),
                expires_at_ms=int(f.get("expires_at") or 0),
                note=f.get("note", ""),
            )
        )
    if gone:
        redis.zrem(keys.POSSIBLE_ORPHANS, *gone)
    return out
