"""Every Redis key this service uses is built here, and only here."""

from __future__ import annotations

import hashlib
import uuid

PREFIX = "axb"
# The uuid5 namespace of Celery task ids: task_id_for(key, action) == str(uuid.uuid5(TASK_ID_NAMESPACE,
# f"{action}:{key}")).
TASK_ID_NAMESPACE = uuid.UUID("6f1c2b0e-6d1e-4f0a-9a53-6a7862696e64")
_TASK_NS_BYTES = TASK_ID_NAMESPACE.bytes
_UUID_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def bind_record(key: str) -> str:
    """Hash: one bind's request, status, attempts and result (the result store)."""
    return f"{PREFIX}:bind:{key}"


BIND_RECORD_PATTERN = f"{PREFIX}:bind:*"  # SCAN pattern matching every bind_record (rekey, forget)


def bind_lease(key: str) -> str:
    """String: held by the one worker currently attempting ``key``."""
    return f"{PREFIX}:lease:{key}"


def bind_history(key: str) -> str:
    """List: one JSON entry per attempt of ``key``."""
    return f"{PREFIX}:hist:{key}"


def target_lease(key: str) -> str:
    """String: held by the one lifecycle operation (unbind, extend) calling the vendor about the
    binding of bind ``key``, so that operations on one binding reach the vendor one at a time."""
    return f"{PREFIX}:lease:binding:{key}"


# Lifecycle operations are records of their own, keyed by these prefixes; ``action_of`` routes a
# key to its Celery task (``axb.bind``, ``axb.unbind``, ``axb.extend``). Bind keys may not use them.
UNBIND_PREFIX = "unbind:"
EXTEND_PREFIX = "extend:"
# Completion callback deliveries (worker.callbacks) are records too, routed to ``axb.callback``.
CALLBACK_PREFIX = "callback:"
RESERVED_PREFIXES = (UNBIND_PREFIX, EXTEND_PREFIX, CALLBACK_PREFIX)


def unbind_op(key: str) -> str:
    """Key of the unbind operation of bind ``key``."""
    return f"{UNBIND_PREFIX}{key}"


def unbind_subs_op(pool_key: str, subs_id: str) -> str:
    """Key of an unbind operation given by PoolKey and SubsId (no bind record)."""
    return f"{UNBIND_PREFIX}subs:{pool_key}:{subs_id}"


def extend_op(key: str, expiration_compact: str) -> str:
    """Key of the operation moving bind ``key``'s Expiration to ``expiration_compact`` (yyyyMMddHHmmss)."""
    return f"{EXTEND_PREFIX}{key}:{expiration_compact}"


def callback_job(key: str, finished_ms: int) -> str:
    """Key of the delivery of record ``key``'s completion callback for the moment it finished
    (a replayed record that finishes again gets a new delivery)."""
    return f"{CALLBACK_PREFIX}{key}@{finished_ms}"


def done_channel(key: str) -> str:
    """Pub/sub channel: the new status of record ``key`` (bind or operation) is published here
    by the script that makes it terminal (succeeded, dead_lettered, cancelled)."""
    return f"{PREFIX}:done:{key}"


def action_of(key: str) -> str:
    """``bind``, ``unbind``, ``extend`` or ``callback``: which task works on the record ``key``."""
    if key.startswith(UNBIND_PREFIX):
        return "unbind"
    if key.startswith(EXTEND_PREFIX):
        return "extend"
    if key.startswith(CALLBACK_PREFIX):
        return "callback"
    return "bind"


def delayed(queue: str) -> str:
    """Zset key -> due time (ms): retries and long limiter waits of binds on ``queue``."""
    return f"{PREFIX}:delayed:{queue}"


def delayed_claimed(queue: str) -> str:
    """Zset key -> claim time (ms): keys a pump took from the delay set, until published."""
    return f"{PREFIX}:delayed:{queue}:claimed"


def delay_wake(queue: str) -> str:
    """List: a token per entry put on ``queue``'s delay set due at once (a completion callback's
    delivery): wakes one pump now instead of at its next poll."""
    return f"{PREFIX}:delayed:{queue}:wake"


def watch(queue: str) -> str:
    """Zset key -> check time (ms): every accepted, unfinished key of ``queue`` (the watchdog's)."""
    return f"{PREFIX}:watch:{queue}"


def watchdog_lock(queue: str) -> str:
    """String: held by the one pump running the watchdog sweep of ``queue``."""
    return f"{PREFIX}:watchdog:{queue}"


DEAD_LETTERS = f"{PREFIX}:dlq"  # stream of dead letters, never trimmed
DEAD_LETTER_AUDIT = f"{PREFIX}:dlq:audit"  # stream of purge / replay audit records
BACKFILL_PREFIX = f"{PREFIX}:backfill"
DATA_KEY_CHECK = f"{PREFIX}:datakey:check"  # string: a value sealed under AXB_DATA_KEY (worker.sealing)
DLQ_RETENTION_LOCK = f"{PREFIX}:dlq:retention"  # string: held by the one pump sweeping old dead letters


def park_line(scope: str) -> str:
    """String: when (ms) the line of batch keys parked for ``scope``'s rate limit ends."""
    return f"{PREFIX}:rl:{{{scope}}}:parked"


def rate_tat(scope: str) -> str:
    """String: GCRA theoretical arrival time (µs) for a limiter scope (account or pool)."""
    return f"{PREFIX}:rl:{{{scope}}}:tat"


def rate_penalty(scope: str) -> str:
    """Hash: the cluster-wide slow-down after the vendor throttled ``scope``."""
    return f"{PREFIX}:rl:{{{scope}}}:penalty"


def account_hold(account: str) -> str:
    """String (JSON, with a TTL): set while the vendor refuses ``account``; every worker holds
    its calls for that account until it runs out (see :mod:`worker.execution.hold`)."""
    return f"{PREFIX}:hold:account:{account}"


VENDOR_HOLD = f"{PREFIX}:hold:vendor"  # String (JSON): open while the vendor is down; no TTL
VENDOR_PROBE = f"{PREFIX}:hold:vendor:probe"  # String: the one delivery probing the vendor
VENDOR_NEXT_PROBE = f"{PREFIX}:hold:vendor:next"  # String: the held key due soon, to probe
VENDOR_OUTCOMES = f"{PREFIX}:hold:vendor:outcomes"  # Hash: answered/failed calls per second
HELD_QUEUES = f"{PREFIX}:hold:vendor:queues"  # Set: queues with keys in a held set


def held(queue: str) -> str:
    """Zset key -> when it was held (ms): keys of ``queue`` waiting out the vendor hold."""
    return f"{PREFIX}:held:{queue}"


def task_id_for(key: str, action: str = "bind") -> str:
    """Celery task id derived from the idempotency key: the same key, the same task id."""
    # uuid.uuid5(TASK_ID_NAMESPACE, name) spelled out (bulk enqueues derive one per row; building a
    # uuid.UUID costs more than the hash).
    h = hashlib.sha1(_TASK_NS_BYTES + f"{action}:{key}".encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_UUID_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


# --- the HTTP API (worker.tokens, worker.api) ---------------------------------------------------

API_TOKENS = f"{PREFIX}:api:tokens"  # hash: token id -> JSON (name, scopes, SHA-256, created, revoked)
API_TOKEN_NAMES = f"{PREFIX}:api:token-names"  # hash: name -> id of the name's live token


def api_rate_scope(token_id: str) -> str:
    """Limiter scope (see :func:`rate_tat`) of one API token's requests."""
    return f"api:{token_id}"


# --- the on-call console (worker.console) and the possible-orphans ledger (worker.orphans) -------

OUTCOME_MINUTE_PREFIX = f"{PREFIX}:stats:min:"  # worker/store/lua/finished.lua builds the same name


def outcome_minute(minute: int) -> str:
    """Hash, TTL 25 h: per epoch minute, ``bind:<status>`` and ``dlq:<code>`` counts (finished.lua)."""
    return f"{OUTCOME_MINUTE_PREFIX}{minute}"


def console_session(session_id: str) -> str:
    """String (JSON, with a TTL): one console login: token id, name, scopes, CSRF token."""
    return f"{PREFIX}:console:session:{session_id}"


POSSIBLE_ORPHANS = f"{PREFIX}:orphans"  # zset: orphan id -> its binding's Expiration (ms)


def possible_orphan(orphan_id: str) -> str:
    """Hash, TTL up to the binding's Expiration: one copy of a bind that may have bound at the vendor."""
    return f"{PREFIX}:orphan:{orphan_id}"
