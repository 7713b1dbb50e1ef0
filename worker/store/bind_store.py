"""The bind record store: one Redis hash per idempotency key, the source of truth for a bind.

Every state change is one Lua script, so a record, the delay queue and the dead-letter stream
never disagree. Terminal states (``succeeded``, ``dead_lettered``) are final: no script moves
a record out of them (a replay is an explicit, audited operation of the dead-letter module).

Statuses: ``pending`` (accepted, not yet tried), ``retrying`` (tried, will be tried again),
``succeeded`` (a ``SecretBindDTO`` is stored), ``dead_lettered`` (see the stream), ``cancelled``
(an unbind arrived before any request of the bind could have bound: it never will).

Lifecycle operations (unbind, extend; see :mod:`worker.lifecycle`) are records too, keyed
``unbind:<key>`` / ``extend:<key>:<expiration>``, with the same statuses, retries, delay queue,
watchdog and dead letters. Their effect on the bind record (``unbound_at``, a new
``expires_at`` and TTL) is written in the same script that marks the operation succeeded.

The race between an unbind and a pending bind is settled here, atomically:

- accepting an unbind marks the bind record ``cancel_requested`` (:meth:`BindStore.create_ops`);
- a bind attempt about to go out with that mark, and no request of its own whose fate is
  unknown (``inflight``), ends ``cancelled`` instead (:data:`_BEGIN_ATTEMPT` returns -2): every
  earlier attempt got a definite refusal, so nothing was bound, and nothing ever will be;
- the unbind itself cancels such a bind at once (:meth:`BindStore.try_cancel`), or, when a
  request is in flight, waits for the bind to finish and then unbinds what it made.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

import redis

from worker import keys
from worker.hold import Hold
from worker.redis_client import translated
from worker.redis_text import as_text as _s
from worker.replication import ReplicaWait
from worker.sealing import check_data_key, seal, unseal

PENDING = "pending"
RETRYING = "retrying"
SUCCEEDED = "succeeded"
DEAD_LETTERED = "dead_lettered"
CANCELLED = "cancelled"
TERMINAL = frozenset({SUCCEEDED, DEAD_LETTERED, CANCELLED})
CANCELLED_CODE = "axb.CANCELLED"


def now_ms() -> int:
    return int(time.time() * 1000)


# Prepended to every script that makes a record terminal: ``axb_finished`` publishes the new
# status on the record's done channel and schedules its completion callback (worker/finished.lua).
_FINISHED = resources.files("worker").joinpath("finished.lua").read_text(encoding="utf-8")


# Create many bind records in one call (a backfill's chunk).
# KEYS: watch, then one record per row. ARGV: 1 now, 2 watch-due, 3 action, 4 the rows as JSON,
#       [[key, task_id, request, fingerprint, pool, deadline, expires_at, ttl_s
#         (, callback_url, callback_numbers)], ...] (all text).
# Returns {flags, ...}: one character per row, '1' created or '0' already there; for each '0', in
# row order, its fingerprint, status and published flag follow. A key twice in one call is
# created by the first row and reported by the second.
_CREATE_MANY = """
local rows = cjson.decode(ARGV[4])
local flags, out, watch = {}, {''}, {}
for i, row in ipairs(rows) do
  local rec = KEYS[i + 1]
  if redis.call('EXISTS', rec) == 1 then
    local r = redis.call('HMGET', rec, 'fingerprint', 'status', 'published')
    flags[i] = '0'
    out[#out + 1] = r[1] or ''
    out[#out + 1] = r[2] or ''
    out[#out + 1] = r[3] or '0'
  else
    redis.call('HSET', rec, 'key', row[1], 'task_id', row[2], 'request', row[3],
      'fingerprint', row[4], 'pool', row[5], 'created_at', ARGV[1], 'updated_at', ARGV[1],
      'deadline', row[6], 'expires_at', row[7], 'status', 'pending', 'attempts', 0,
      'published', 0, 'action', ARGV[3])
    if row[9] then redis.call('HSET', rec, 'callback_url', row[9], 'callback_numbers', row[10]) end
    redis.call('EXPIRE', rec, tonumber(row[8]))
    watch[#watch + 1] = ARGV[2]
    watch[#watch + 1] = row[1]
    flags[i] = '1'
    if #watch >= 1000 then
      redis.call('ZADD', KEYS[1], unpack(watch))
      watch = {}
    end
  end
end
if #watch > 0 then redis.call('ZADD', KEYS[1], unpack(watch)) end
out[1] = table.concat(flags)
return out
"""

_ROWS_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# KEYS: records. Marks each record that still exists as published (its message is on the queue).
_MARK_PUBLISHED = """
for _, rec in ipairs(KEYS) do
  if redis.call('EXISTS', rec) == 1 then redis.call('HSET', rec, 'published', 1) end
end
return #KEYS
"""

# KEYS: record, history, delayed, watch, account hold, vendor hold, vendor probe lock, +finish.
# ARGV: signed-json, now, check the holds (0/1), probe token ('' : not the probe), +finish.
# Returns the attempt number, -1 (terminal: do not call), -2 (cancelled now: do not call),
# -3 (calls are on hold, for the account or the vendor, and this delivery is not the vendor
# hold's probe: do not call; nothing written). (+finish: see worker/finished.lua.)
_BEGIN_ATTEMPT = (
    _FINISHED
    + """
local r = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested', 'inflight', 'key')
local st = r[1]
if not st or st == 'succeeded' or st == 'dead_lettered' or st == 'cancelled' then return -1 end
if ARGV[3] == '1' then
  if redis.call('EXISTS', KEYS[5]) == 1 then return -3 end
  if redis.call('EXISTS', KEYS[6]) == 1 and (ARGV[4] == '' or redis.call('GET', KEYS[7]) ~= ARGV[4]) then
    return -3
  end
end
if r[2] and r[2] ~= '' and (not r[3] or r[3] == '') then
  -- An unbind was accepted and no request of ours may have bound: never send one.
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'code', 'axb.CANCELLED',
    'message', 'cancelled by ' .. r[2] .. ' before any request could bind', 'cancelled_at', ARGV[2],
    'updated_at', ARGV[2])
  redis.call('ZREM', KEYS[3], r[4])
  redis.call('ZREM', KEYS[4], r[4])
  axb_finished(KEYS[1], 'cancelled', KEYS[3], KEYS[4], ARGV[2])
  return -2
end
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 'inflight', ARGV[1], 'inflight_at', ARGV[2])
end
redis.call('HSETNX', KEYS[1], 'first_attempt_at', ARGV[2])
redis.call('HSET', KEYS[1], 'last_attempt_at', ARGV[2], 'updated_at', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
"""
)

# Undo a begin whose call did not go out after all (no rate-limit slot): the attempt is not
# counted, and a first attempt's request is forgotten (a re-sent one stays: its fate is unknown).
# KEYS: record. ARGV: attempt, first (0/1).
_UNBEGIN = """
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '-1') ~= tonumber(ARGV[1]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
if ARGV[2] == '1' then redis.call('HDEL', KEYS[1], 'inflight', 'inflight_at') end
if ARGV[1] == '1' then redis.call('HDEL', KEYS[1], 'first_attempt_at') end
return 1
"""

# KEYS: record, delayed, watch, +finish. ARGV: by (the unbind's key), now, +finish.
# 1 cancelled now; 0 already terminal; 2 a request is in flight (wait); -1 no record.
_TRY_CANCEL = (
    _FINISHED
    + """
local r = redis.call('HMGET', KEYS[1], 'status', 'inflight', 'key')
local st = r[1]
if not st then return -1 end
if st == 'succeeded' or st == 'dead_lettered' or st == 'cancelled' then return 0 end
redis.call('HSETNX', KEYS[1], 'cancel_requested', ARGV[1])
if r[2] and r[2] ~= '' then return 2 end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'code', 'axb.CANCELLED',
  'message', 'cancelled by ' .. ARGV[1] .. ' before any request could bind', 'cancelled_at', ARGV[2],
  'updated_at', ARGV[2])
redis.call('ZREM', KEYS[2], r[3])
redis.call('ZREM', KEYS[3], r[3])
axb_finished(KEYS[1], 'cancelled', KEYS[2], KEYS[3], ARGV[2])
return 1
"""
)

# The start of a delivery, in one round trip. KEYS: record, lease, delayed, account hold,
# vendor hold. ARGV: key, lease token, lease ms, now ms.
# Returns {what, record hash (flat), starts, hold}: what = 0 no record, 1 terminal, 2 a stale
# copy (the delay queue owns the key until it is due), 3 busy (another delivery holds the
# lease: looked at again once it has run out), 4 go (lease taken, ``starts`` counted); hold =
# the account's hold, else the vendor's, else false (see worker/hold.py).
_START = """
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {0, {}, 0, false} end
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'succeeded' or st == 'dead_lettered' or st == 'cancelled' then return {1, h, 0, false} end
local now = tonumber(ARGV[4])
local due = redis.call('ZSCORE', KEYS[3], ARGV[1])
if due and tonumber(due) > now + 50 then return {2, h, 0, false} end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', tonumber(ARGV[3])) then
  redis.call('ZADD', KEYS[3], 'GT', now + tonumber(ARGV[3]), ARGV[1])
  return {3, h, 0, false}
end
local starts = redis.call('HINCRBY', KEYS[1], 'starts', 1)
return {4, h, starts, redis.call('GET', KEYS[4]) or redis.call('GET', KEYS[5])}
"""

# KEYS: record, history, delayed, watch, lease, +finish. ARGV: result-json, request_id, now,
#       expire-at-seconds, hist-json, lease token ('' : keep the lease and the start count), +finish
_SUCCEED = (
    _FINISHED
    + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
-- 'cancelled' is not refused: a binding that was made is always recorded (never orphaned).
if st == 'succeeded' or st == 'dead_lettered' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'result', ARGV[1], 'request_id', ARGV[2],
  'code', 'OK', 'message', '', 'succeeded_at', ARGV[3], 'updated_at', ARGV[3])
redis.call('HDEL', KEYS[1], 'inflight', 'inflight_at')
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[5]) end
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[4]))
redis.call('EXPIREAT', KEYS[2], tonumber(ARGV[4]))
local k = redis.call('HGET', KEYS[1], 'key')
redis.call('ZREM', KEYS[3], k)
redis.call('ZREM', KEYS[4], k)
if ARGV[6] ~= '' then
  -- The delivery is over: its start is no longer a death to count, and its lease is freed.
  redis.call('HSET', KEYS[1], 'starts', 0)
  if redis.call('GET', KEYS[5]) == ARGV[6] then redis.call('DEL', KEYS[5]) end
end
axb_finished(KEYS[1], 'succeeded', KEYS[3], KEYS[4], ARGV[3])
return 1
"""
)

# KEYS: record, history, delayed. ARGV: status, due-ms, code, message, request_id, http, now,
#       keep-inflight(0/1), hist-json, throttled(0/1), outage(0/1: the attempt failed on the
#       vendor's side and is not counted against AXB_MAX_ATTEMPTS)
_SCHEDULE = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st == 'succeeded' or st == 'dead_lettered' or st == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'code', ARGV[3], 'message', ARGV[4],
  'request_id', ARGV[5], 'http_status', ARGV[6], 'updated_at', ARGV[7], 'next_at', ARGV[2])
if ARGV[8] == '0' then redis.call('HDEL', KEYS[1], 'inflight', 'inflight_at') end
if ARGV[10] == '1' then redis.call('HINCRBY', KEYS[1], 'throttles', 1) end
if ARGV[11] == '1' then redis.call('HINCRBY', KEYS[1], 'outages', 1) end
if ARGV[9] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[9])
  redis.call('EXPIRE', KEYS[2], redis.call('TTL', KEYS[1]))
end
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), redis.call('HGET', KEYS[1], 'key'))
return 1
"""

# KEYS: record, history, delayed, dlq, watch, +finish. ARGV: code, message, request_id, http, now,
#       hist-json, extra-json, +finish
_DEAD_LETTER = (
    _FINISHED
    + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st == 'succeeded' or st == 'dead_lettered' or st == 'cancelled' then return 0 end
if ARGV[6] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[6]) end
local r = redis.call('HMGET', KEYS[1], 'key', 'task_id', 'attempts', 'first_attempt_at',
  'last_attempt_at', 'pool', 'request', 'created_at', 'action', 'deadline', 'expires_at')
local hist = redis.call('LRANGE', KEYS[2], 0, -1)
local id = redis.call('XADD', KEYS[4], '*', 'key', r[1], 'task_id', r[2] or '', 'code', ARGV[1],
  'message', ARGV[2], 'request_id', ARGV[3], 'http_status', ARGV[4], 'attempts', r[3] or '0',
  'first_attempt_at', r[4] or '', 'last_attempt_at', r[5] or '', 'dead_lettered_at', ARGV[5],
  'pool', r[6] or '', 'request', r[7] or '', 'enqueued_at', r[8] or '', 'action', r[9] or 'bind',
  'deadline', r[10] or '', 'expires_at', r[11] or '',
  'history', '[' .. table.concat(hist, ',') .. ']', 'extra', ARGV[7])
redis.call('HSET', KEYS[1], 'status', 'dead_lettered', 'code', ARGV[1], 'message', ARGV[2],
  'request_id', ARGV[3], 'http_status', ARGV[4], 'dead_lettered_at', ARGV[5],
  'updated_at', ARGV[5], 'dlq_id', id)
-- The outcome is settled: the signed request (both numbers, the signature) is never sent again.
redis.call('HDEL', KEYS[1], 'inflight', 'inflight_at')
-- A history started by this very dead letter (a first call refused) lives no longer than its record.
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('ZREM', KEYS[3], r[1])
redis.call('ZREM', KEYS[5], r[1])
axb_finished(KEYS[1], 'dead_lettered', KEYS[3], KEYS[5], ARGV[5])
return id
"""
)

# Create a lifecycle operation (unbind / extend) and mark its bind, in one step.
# KEYS: op record, watch, target (bind) record.
# ARGV: 1 key, 2 task_id, 3 request, 4 fingerprint, 5 pool, 6 now, 7 deadline, 8 expires_at,
#       9 ttl_s, 10 action, 11 watch-due, 12 target key ('' if none), 13 callback_url ('' if none),
#       14 callback_numbers
# Returns {created(0/1/2 = re-armed), fingerprint, status, published, seq}.
_CREATE_OP = """
local target = ARGV[12]
local has_target = target ~= '' and redis.call('EXISTS', KEYS[3]) == 1
if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'status', 'published', 'seq')
  if ARGV[10] == 'extend' and has_target and r[2] ~= 'dead_lettered' then
    local latest = tonumber(redis.call('HGET', KEYS[3], 'extend_seq') or '0')
    if tonumber(r[4] or '0') < latest then
      -- A later extend was asked for since this one: asking again makes this one the latest.
      local n = redis.call('HINCRBY', KEYS[3], 'extend_seq', 1)
      redis.call('HSET', KEYS[1], 'seq', n, 'status', 'pending', 'attempts', 0, 'published', 0,
        'code', '', 'message', 'asked for again after a later extend', 'updated_at', ARGV[6],
        'deadline', ARGV[7], 'starts', 0)
      redis.call('HDEL', KEYS[1], 'result', 'succeeded_at', 'next_at')
      redis.call('ZADD', KEYS[2], tonumber(ARGV[11]), ARGV[1])
      return {2, r[1] or '', 'pending', '0', tostring(n)}
    end
  end
  return {0, r[1] or '', r[2] or '', r[3] or '0', r[4] or '0'}
end
local seq = 0
if has_target then
  if ARGV[10] == 'unbind' then
    redis.call('HSETNX', KEYS[3], 'cancel_requested', ARGV[1])
    redis.call('HSETNX', KEYS[3], 'cancel_requested_at', ARGV[6])
  elseif ARGV[10] == 'extend' then
    seq = redis.call('HINCRBY', KEYS[3], 'extend_seq', 1)
  end
end
redis.call('HSET', KEYS[1], 'key', ARGV[1], 'task_id', ARGV[2], 'request', ARGV[3],
  'fingerprint', ARGV[4], 'pool', ARGV[5], 'created_at', ARGV[6], 'updated_at', ARGV[6],
  'deadline', ARGV[7], 'expires_at', ARGV[8], 'status', 'pending', 'attempts', 0,
  'published', 0, 'action', ARGV[10], 'target', target, 'seq', seq)
if ARGV[13] ~= '' then redis.call('HSET', KEYS[1], 'callback_url', ARGV[13], 'callback_numbers', ARGV[14]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[11]), ARGV[1])
return {1, ARGV[4], 'pending', '0', tostring(seq)}
"""

# An operation succeeded (or had nothing to do); its effect on the bind, in the same step.
# KEYS: op record, op history, delayed, watch, target record, target history, +finish.
# ARGV: 1 result-json, 2 request_id, 3 now, 4 op expire-at s, 5 hist-json, 6 code, 7 message,
#       8 effect ('' | 'unbound' | 'extended'), 9 target expires_at ms, 10 target expire-at s,
#       11 expiration text, +finish
_OP_SUCCEED = (
    _FINISHED
    + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if st == 'succeeded' or st == 'dead_lettered' or st == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'succeeded', 'result', ARGV[1], 'request_id', ARGV[2],
  'code', ARGV[6], 'message', ARGV[7], 'succeeded_at', ARGV[3], 'updated_at', ARGV[3])
redis.call('HDEL', KEYS[1], 'inflight', 'inflight_at')
if ARGV[5] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[5]) end
redis.call('EXPIREAT', KEYS[1], tonumber(ARGV[4]))
redis.call('EXPIREAT', KEYS[2], tonumber(ARGV[4]))
local k = redis.call('HGET', KEYS[1], 'key')
redis.call('ZREM', KEYS[3], k)
redis.call('ZREM', KEYS[4], k)
if ARGV[8] ~= '' and redis.call('EXISTS', KEYS[5]) == 1 then
  if ARGV[8] == 'unbound' then
    redis.call('HSETNX', KEYS[5], 'unbound_at', ARGV[3])
    redis.call('HSET', KEYS[5], 'unbind_key', k, 'updated_at', ARGV[3])
  elseif ARGV[8] == 'extended' then
    redis.call('HSET', KEYS[5], 'expires_at', ARGV[9], 'expiration', ARGV[11], 'extended_at', ARGV[3],
      'updated_at', ARGV[3])
    redis.call('EXPIREAT', KEYS[5], tonumber(ARGV[10]))
    if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('EXPIREAT', KEYS[6], tonumber(ARGV[10])) end
  end
end
axb_finished(KEYS[1], 'succeeded', KEYS[3], KEYS[4], ARGV[3])
return 1
"""
)

# KEYS: the scope's park line. ARGV: now ms, earliest ms, step ms, count.
# Returns when the first of ``count`` keys is due; the line then ends ``count`` steps later.
_PARK_LINE = """
local now, earliest = tonumber(ARGV[1]), tonumber(ARGV[2])
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
if start < earliest then start = earliest end
local finish = start + tonumber(ARGV[3]) * tonumber(ARGV[4])
local ttl = math.max(1000, math.ceil(finish - now) + 1000)
redis.call('SET', KEYS[1], string.format('%.0f', finish), 'PX', ttl)
return string.format('%.0f', start)
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class BindRecord:
    """A decoded record hash."""

    key: str
    status: str
    task_id: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    pool: str = ""
    action: str = "bind"
    attempts: int = 0
    throttles: int = 0
    # attempts that failed on the vendor's side (unreachable, 5xx): not counted against AXB_MAX_ATTEMPTS
    outages: int = 0
    code: str = ""
    message: str = ""
    request_id: str = ""
    http_status: int | None = None
    result: dict[str, Any] | None = None
    inflight: dict[str, Any] | None = None
    inflight_at: int | None = None
    created_at: int = 0
    updated_at: int = 0
    deadline: int = 0
    expires_at: int = 0
    first_attempt_at: int | None = None
    last_attempt_at: int | None = None
    succeeded_at: int | None = None
    dead_lettered_at: int | None = None
    next_at: int | None = None
    dlq_id: str = ""
    published: bool = False
    starts: int = 0
    # lifecycle: on bind records
    cancel_requested: str = ""
    cancelled_at: int | None = None
    unbound_at: int | None = None
    unbind_key: str = ""
    expiration: str = ""
    extended_at: int | None = None
    extend_seq: int = 0
    # lifecycle: on operation records (the bind they act on, the order of extends)
    target: str = ""
    seq: int = 0
    # completion callback (worker.callbacks), set at creation
    callback_url: str = ""
    callback_numbers: bool = False

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> BindRecord:
        def opt_int(name: str) -> int | None:
            v = data.get(name)
            return int(v) if v not in (None, "") else None

        def js(name: str) -> Any:
            # request, result and inflight hold phone numbers: sealed at rest (worker.sealing)
            v = data.get(name)
            return json.loads(unseal(v)) if v else None

        return cls(
            key=data.get("key", ""),
            status=data.get("status", ""),
            task_id=data.get("task_id", ""),
            request=js("request") or {},
            fingerprint=data.get("fingerprint", ""),
            pool=data.get("pool", ""),
            action=data.get("action", "bind") or "bind",
            attempts=int(data.get("attempts") or 0),
            throttles=int(data.get("throttles") or 0),
            outages=int(data.get("outages") or 0),
            code=data.get("code", ""),
            message=data.get("message", ""),
            request_id=data.get("request_id", ""),
            http_status=opt_int("http_status"),
            result=js("result"),
            inflight=js("inflight"),
            inflight_at=opt_int("inflight_at"),
            created_at=int(data.get("created_at") or 0),
            updated_at=int(data.get("updated_at") or 0),
            deadline=int(data.get("deadline") or 0),
            expires_at=int(data.get("expires_at") or 0),
            first_attempt_at=opt_int("first_attempt_at"),
            last_attempt_at=opt_int("last_attempt_at"),
            succeeded_at=opt_int("succeeded_at"),
            dead_lettered_at=opt_int("dead_lettered_at"),
            next_at=opt_int("next_at"),
            dlq_id=data.get("dlq_id", ""),
            published=data.get("published") == "1",
            starts=int(data.get("starts") or 0),
            cancel_requested=data.get("cancel_requested", ""),
            cancelled_at=opt_int("cancelled_at"),
            unbound_at=opt_int("unbound_at"),
            unbind_key=data.get("unbind_key", ""),
            expiration=data.get("expiration", ""),
            extended_at=opt_int("extended_at"),
            extend_seq=int(data.get("extend_seq") or 0),
            target=data.get("target", ""),
            seq=int(data.get("seq") or 0),
            callback_url=data.get("callback_url", ""),
            callback_numbers=data.get("callback_numbers") == "1",
        )


@dataclass(frozen=True)
class Start:
    """What :meth:`BindStore.start` found: ``what`` is one of the ``START_*`` codes."""

    what: int
    record: BindRecord | None
    starts: int
    # The hold in force when the delivery started: the account's, else the vendor's.
    hold: Hold | None


START_MISSING, START_TERMINAL, START_DELAYED, START_BUSY, START_GO = range(5)


class CreateOutcome(NamedTuple):
    """What :meth:`BindStore.create_many` found or made for one row (a tuple: bulk enqueues make
    one per row)."""

    created: bool
    fingerprint: str
    status: str
    published: bool


@dataclass(frozen=True)
class OpCreateOutcome:
    created: bool
    fingerprint: str
    status: str
    published: bool
    rearmed: bool = False
    seq: int = 0


class _CreateCall(NamedTuple):
    rows: Sequence[dict[str, Any]]
    keys: list[str]
    args: list[Any]


class PendingCreates:
    """``_CREATE_MANY`` calls sent by :meth:`BindStore.start_create_many`, answers not read yet.

    The calls go out on a connection of the client's pool, held until :meth:`result` reads every
    answer (or :meth:`discard` drops it). A call whose answer cannot be had (the connection
    failed, or Redis lost the script) is made again, synchronously, through the registered
    script, which retries and reloads as every other call does: rows its first run created are
    then reported as existing, with their own fingerprint, not published, as after any retry.
    """

    def __init__(self, store: BindStore, calls: list[_CreateCall]) -> None:
        self._store = store
        self._calls = calls
        self._conn: Any = None
        self._out: list[CreateOutcome] | None = None

    def send(self) -> None:
        if not self._calls:
            return
        pool = self._store.r.connection_pool
        conn: Any  # redis-py's Connection: send_packed_command and friends are untyped
        try:
            try:
                conn = pool.get_connection()
            except TypeError:  # redis-py < 5.3 wants a command name
                conn = pool.get_connection("EVALSHA")  # type: ignore[arg-type,unused-ignore]
        except (redis.ConnectionError, redis.TimeoutError):
            return  # result() makes the calls the ordinary way
        sha = self._store._create_many.sha
        try:
            conn.send_packed_command(
                conn.pack_commands([("EVALSHA", sha, len(c.keys), *c.keys, *c.args) for c in self._calls])
            )
        except (redis.ConnectionError, redis.TimeoutError):
            self._drop(conn)
            return
        except BaseException:
            self._drop(conn)
            raise
        self._conn = conn

    def result(self) -> list[CreateOutcome]:
        """The outcome of every row, in order (reads the answers; once)."""
        if self._out is not None:
            return self._out
        conn, self._conn = self._conn, None
        replies: list[Any] = []
        if conn is not None:
            try:
                for _ in self._calls:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:  # one answer per call, an error too
                        replies.append(exc)
            except (redis.ConnectionError, redis.TimeoutError):
                self._drop(conn)
                conn = None
            except BaseException:
                self._drop(conn)
                raise
            else:
                self._store.r.connection_pool.release(conn)
        out: list[CreateOutcome] = []
        for i, call in enumerate(self._calls):
            res = replies[i] if i < len(replies) else None
            if res is None or isinstance(res, redis.exceptions.NoScriptError):
                res = self._store._create_many(keys=call.keys, args=call.args)
            elif isinstance(res, redis.ResponseError):
                raise translated(res)
            _outcomes(call.rows, res, out)
        self._out = out
        return out

    def discard(self) -> None:
        """Give the connection back without reading the answers (the records are made anyway)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._drop(conn)

    def _drop(self, conn: Any) -> None:
        conn.disconnect()  # answers may be pending: the connection cannot be used again as it is
        self._store.r.connection_pool.release(conn)


def _outcomes(rows: Sequence[dict[str, Any]], res: Any, out: list[CreateOutcome]) -> None:
    """Decode one ``_CREATE_MANY`` answer into ``out``."""
    flags, rest = _s(res[0]), res[1:]
    j = 0
    for row, flag in zip(rows, flags, strict=True):
        if flag == "1":
            out.append(CreateOutcome(True, row["fingerprint"], PENDING, False))
        else:
            fp, status, published = rest[j : j + 3]
            j += 3
            out.append(CreateOutcome(False, _s(fp), _s(status), _s(published) == "1"))


class BindStore:
    """Typed access to bind records; every mutation is atomic."""

    # Rows per _CREATE_MANY call (Redis runs one call at a time: a few ms each) and keys per
    # _MARK_PUBLISHED call.
    CREATE_BATCH = 500
    MARK_BATCH = 2000

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
        self._create_many = client.register_script(_CREATE_MANY)
        self._mark_published = client.register_script(_MARK_PUBLISHED)
        self._start = client.register_script(_START)
        self._begin = client.register_script(_BEGIN_ATTEMPT)
        self._unbegin = client.register_script(_UNBEGIN)
        self._succeed = client.register_script(_SUCCEED)
        self._schedule = client.register_script(_SCHEDULE)
        self._dead = client.register_script(_DEAD_LETTER)
        self._release = client.register_script(_RELEASE)
        self._park_line = client.register_script(_PARK_LINE)
        self._create_op = client.register_script(_CREATE_OP)
        self._try_cancel = client.register_script(_TRY_CANCEL)
        self._op_succeed = client.register_script(_OP_SUCCEED)

    # --- the tail of every script that makes a record terminal (worker/finished.lua) ----------

    def _finish_keys(self, key: str, ts: int) -> list[str]:
        return [self.wake_key, keys.bind_record(keys.callback_job(key, ts))]

    def _finish_args(self, key: str, ts: int) -> list[Any]:
        return [keys.done_channel(key), keys.callback_job(key, ts), ts + self.watch_ms, self.CALLBACK_TTL_S]

    # --- producer side -----------------------------------------------------------------------

    def create_many(self, rows: Sequence[dict[str, Any]], *, action: str = "bind") -> list[CreateOutcome]:
        """Create records (``key, task_id, request, fingerprint, pool, deadline, expires_at, ttl_s``),
        up to :attr:`CREATE_BATCH` per script call; existing keys are left untouched and reported."""
        return self.start_create_many(rows, action=action).result()

    def start_create_many(self, rows: Sequence[dict[str, Any]], *, action: str = "bind") -> PendingCreates:
        """:meth:`create_many` in two halves: the script calls go out now, in one write, and
        :meth:`PendingCreates.result` reads the answers; meanwhile Redis creates the records and
        the caller may do other work (a backfill validates its next chunk)."""
        check_data_key(self.r)
        ts = now_ms()
        calls = []
        for i in range(0, len(rows), self.CREATE_BATCH):
            part = rows[i : i + self.CREATE_BATCH]
            payload = _ROWS_JSON.encode(
                [
                    [
                        row["key"],
                        row["task_id"],
                        seal(row["request"]),
                        row["fingerprint"],
                        row["pool"],
                        str(row["deadline"]),
                        str(row["expires_at"]),
                        str(row["ttl_s"]),
                        *_callback_fields(row),
                    ]
                    for row in part
                ]
            )
            record_keys = [self.watch_key, *[keys.bind_record(row["key"]) for row in part]]
            calls.append(_CreateCall(part, record_keys, [ts, ts + self.watch_ms, action, payload]))
        pending = PendingCreates(self, calls)
        pending.send()
        return pending

    def _create_args(self, row: dict[str, Any], ts: int, action: str) -> list[Any]:
        """ARGV of ``_CREATE_OP`` (a lifecycle operation's record)."""
        return [
            row["key"],
            row["task_id"],
            seal(row["request"]),
            row["fingerprint"],
            row["pool"],
            ts,
            row["deadline"],
            row["expires_at"],
            row["ttl_s"],
            action,
            ts + self.watch_ms,
        ]

    def create_ops(self, rows: Sequence[dict[str, Any]]) -> list[OpCreateOutcome]:
        """Create lifecycle operation records (the ``create_many`` fields plus ``action`` and
        ``target``) in one pipelined round trip. An unbind marks its bind ``cancel_requested``
        and an extend takes the bind's next ``extend_seq``, in the same script. An existing
        operation is left as it is and reported, except an extend asked for again after a later
        one: it becomes the latest again (``created`` is then False and ``rearmed`` True)."""
        check_data_key(self.r)
        pipe = self.r.pipeline(transaction=False)
        ts = now_ms()
        for row in rows:
            target = row.get("target") or ""
            self._create_op(
                keys=[
                    keys.bind_record(row["key"]),
                    self.watch_key,
                    keys.bind_record(target) if target else keys.bind_record(row["key"]),
                ],
                args=[
                    *self._create_args(row, ts, row["action"]),
                    target,
                    *(_callback_fields(row) or ["", "0"]),
                ],
                client=pipe,
            )
        out = []
        for res in pipe.execute():
            created, fp, status, published, seq = res
            out.append(
                OpCreateOutcome(
                    created=int(created) == 1,
                    fingerprint=_s(fp),
                    status=_s(status),
                    published=_s(published) == "1",
                    rearmed=int(created) == 2,
                    seq=int(_s(seq) or 0),
                )
            )
        return out

    def mark_published(self, key_list: Sequence[str]) -> None:
        """Note that the messages of ``key_list`` are on the queue, a few thousand keys per call."""
        for i in range(0, len(key_list), self.MARK_BATCH):
            part = [keys.bind_record(k) for k in key_list[i : i + self.MARK_BATCH]]
            if i + self.MARK_BATCH >= len(key_list):  # the producer call's last write: WAIT
                self.wait.script(self.r, self._mark_published, part, [])
            else:
                self._mark_published(keys=part)

    # --- reads -------------------------------------------------------------------------------

    def get(self, key: str) -> BindRecord | None:
        data = self.r.hgetall(keys.bind_record(key))
        if not data:
            return None
        return BindRecord.from_hash({_s(k): _s(v) for k, v in data.items()})

    def get_many(self, key_list: Sequence[str]) -> list[BindRecord | None]:
        pipe = self.r.pipeline(transaction=False)
        for k in key_list:
            pipe.hgetall(keys.bind_record(k))
        out: list[BindRecord | None] = []
        for data in pipe.execute():
            out.append(BindRecord.from_hash({_s(k): _s(v) for k, v in data.items()}) if data else None)
        return out

    def history(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(keys.bind_history(key), 0, -1)]

    # --- worker side -------------------------------------------------------------------------

    def start(self, key: str, token: str, lease_s: float, account: str) -> Start:
        """Begin a delivery of ``key`` in one round trip: read the record, check the delay queue,
        take the lease, count the start and read the hold in force (see ``_START``)."""
        return self.start_many([(key, token)], lease_s, account)[0]

    def start_many(self, items: Sequence[tuple[str, str]], lease_s: float, account: str) -> list[Start]:
        """:meth:`start` for many ``(key, token)`` pairs in one pipelined round trip."""
        ts = now_ms()
        pipe = self.r.pipeline(transaction=False)
        for key, token in items:
            self._start(
                keys=[
                    keys.bind_record(key),
                    keys.bind_lease(key),
                    self.delayed_key,
                    keys.account_hold(account),
                    keys.VENDOR_HOLD,
                ],
                args=[key, token, int(lease_s * 1000), ts],
                client=pipe,
            )
        return [self._started(*res) for res in pipe.execute()]

    @staticmethod
    def _started(what: Any, flat: Any, starts: Any, hold: Any) -> Start:
        rec = None
        if flat:
            it = iter(flat)
            rec = BindRecord.from_hash({_s(k): _s(v) for k, v in zip(it, it, strict=True)})
        return Start(int(what), rec, int(starts), Hold.from_json(hold))

    def unstart(self, key: str, token: str) -> None:
        """Undo a :meth:`start` that will not work on the key (its count and its lease)."""
        self.unstart_many([(key, token)])

    def park(self, items: Sequence[tuple[str, str]], *, scope: str, earliest_ms: int, step_ms: float) -> None:
        """Put started ``(key, token)`` items on the delay queue and undo their starts.

        They join ``scope``'s line of parked keys: one every ``step_ms`` (the scope's rate),
        from ``earliest_ms`` or the end of the line, whichever is later. Keys parked by every
        worker so come back about as fast as the limiter can take them, instead of all at once
        to be refused again. The delay queue entries are written before the starts are undone,
        so no key is ever left with neither a message, a lease nor a due time."""
        if not items:
            return
        start = int(
            self._park_line(keys=[keys.park_line(scope)], args=[now_ms(), earliest_ms, step_ms, len(items)])
        )
        due_ms = [start + int(j * step_ms) for j in range(len(items))]
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(self.delayed_key, {k: due for (k, _), due in zip(items, due_ms, strict=True)})
        self.unstart_many(items, pipe=pipe)

    def unstart_many(self, items: Sequence[tuple[str, str]], *, pipe: Any = None) -> None:
        """:meth:`unstart` for many; with ``pipe``, after what is already queued on it."""
        if not items and pipe is None:
            return
        pipe = pipe if pipe is not None else self.r.pipeline(transaction=False)
        for key, token in items:
            pipe.hincrby(keys.bind_record(key), "starts", -1)
            self._release(keys=[keys.bind_lease(key)], args=[token], client=pipe)
        pipe.execute()

    def release_lease(self, key: str, token: str) -> None:
        self._release(keys=[keys.bind_lease(key)], args=[token])

    def acquire_target(self, key: str, token: str, ttl_s: float) -> bool:
        """Take the lease on bind ``key``'s binding (held by one lifecycle operation at a time)."""
        return bool(self.r.set(keys.target_lease(key), token, nx=True, px=int(ttl_s * 1000)))

    def release_target(self, key: str, token: str) -> None:
        self._release(keys=[keys.target_lease(key)], args=[token])

    def note_finish(self, key: str) -> None:
        """A delivery is over: its start (counted by :meth:`start`) is not a death to count."""
        self.r.hset(keys.bind_record(key), "starts", 0)

    def begin_attempt(
        self,
        key: str,
        signed: dict[str, Any] | None,
        *,
        account: str = "",
        probe_token: str = "",
        client: Any = None,
    ) -> Any:
        """Record that a vendor call is about to go out; returns the attempt number, or -1
        (terminal: do not call) or -2 (an unbind cancelled the bind just now: do not call).
        With ``account``: -3 if calls are on hold (that account's, or the vendor's unless this
        delivery holds the probe lock with ``probe_token``; see :mod:`worker.hold`).
        With ``client`` (a pipeline) the command is only queued on it (queue ``self.wait`` after
        it)."""
        ts = now_ms()
        begin_keys = [
            keys.bind_record(key),
            keys.bind_history(key),
            self.delayed_key,
            self.watch_key,
            keys.account_hold(account),
            keys.VENDOR_HOLD,
            keys.VENDOR_PROBE,
            *self._finish_keys(key, ts),
        ]
        args: list[Any] = [
            seal(json.dumps(signed)) if signed else "",
            ts,
            1 if account else 0,
            probe_token,
            *self._finish_args(key, ts),
        ]
        if client is not None:
            return self._begin(keys=begin_keys, args=args, client=client)
        return int(self.wait.script(self.r, self._begin, begin_keys, args))

    def unbegin(self, key: str, attempt: int, *, first: bool) -> None:
        """Undo :meth:`begin_attempt` for a call that did not go out after all."""
        self._unbegin(keys=[keys.bind_record(key)], args=[attempt, 1 if first else 0])

    def try_cancel(self, key: str, by: str) -> int:
        """Cancel bind ``key`` for the unbind ``by`` if no request of it may have bound.

        1: cancelled now; 0: already finished; 2: a request is in flight (wait for the bind);
        -1: no record."""
        ts = now_ms()
        return int(
            self._try_cancel(
                keys=[keys.bind_record(key), self.delayed_key, self.watch_key, *self._finish_keys(key, ts)],
                args=[by, ts, *self._finish_args(key, ts)],
            )
        )

    def op_succeed(
        self,
        key: str,
        *,
        result: dict[str, Any],
        request_id: str,
        expire_at_s: int,
        hist: dict[str, Any] | None,
        code: str = "OK",
        message: str = "",
        target: str = "",
        effect: str = "",
        target_expires_ms: int = 0,
        target_expire_at_s: int = 0,
        expiration: str = "",
    ) -> int:
        """Mark operation ``key`` succeeded and apply its ``effect`` on bind ``target``
        (``unbound``, or ``extended`` to ``target_expires_ms`` with the record's TTL following)."""
        tkey = target or key
        ts = now_ms()
        return int(
            self.wait.script(
                self.r,
                self._op_succeed,
                [
                    keys.bind_record(key),
                    keys.bind_history(key),
                    self.delayed_key,
                    self.watch_key,
                    keys.bind_record(tkey),
                    keys.bind_history(tkey),
                    *self._finish_keys(key, ts),
                ],
                [
                    seal(json.dumps(result, ensure_ascii=False)),
                    request_id,
                    ts,
                    expire_at_s,
                    _hist(hist),
                    code,
                    message,
                    effect if target else "",
                    target_expires_ms,
                    target_expire_at_s,
                    expiration,
                    *self._finish_args(key, ts),
                ],
            )
        )

    def succeed(
        self,
        key: str,
        result: dict[str, Any],
        request_id: str,
        expire_at_s: int,
        hist: dict[str, Any] | None,
        *,
        lease_token: str = "",
    ) -> int:
        """Mark ``key`` succeeded. With ``lease_token``, also end the delivery in the same step
        (what :meth:`note_finish` and :meth:`release_lease` would do)."""
        ts = now_ms()
        return int(
            self.wait.script(
                self.r,
                self._succeed,
                [
                    keys.bind_record(key),
                    keys.bind_history(key),
                    self.delayed_key,
                    self.watch_key,
                    keys.bind_lease(key),
                    *self._finish_keys(key, ts),
                ],
                [
                    seal(json.dumps(result)),
                    request_id,
                    ts,
                    expire_at_s,
                    _hist(hist),
                    lease_token,
                    *self._finish_args(key, ts),
                ],
            )
        )

    def schedule(
        self,
        key: str,
        *,
        due_ms: int,
        status: str = RETRYING,
        code: str = "",
        message: str = "",
        request_id: str = "",
        http_status: int | None = None,
        keep_inflight: bool = False,
        hist: dict[str, Any] | None = None,
        throttled: bool = False,
        outage: bool = False,
        durable: bool = False,
    ) -> int:
        """Put ``key`` on the delay queue. ``durable``: WAIT for the replicas (a retry after a
        vendor answer, which settled the stored request)."""
        run = self.wait.script if durable else _plain
        return int(
            run(
                self.r,
                self._schedule,
                [keys.bind_record(key), keys.bind_history(key), self.delayed_key],
                [
                    status,
                    due_ms,
                    code,
                    message,
                    request_id,
                    "" if http_status is None else http_status,
                    now_ms(),
                    1 if keep_inflight else 0,
                    _hist(hist),
                    1 if throttled else 0,
                    1 if outage else 0,
                ],
            )
        )

    def dead_letter(
        self,
        key: str,
        *,
        code: str,
        message: str,
        request_id: str = "",
        http_status: int | None = None,
        hist: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str | None:
        """Move ``key`` to the dead letters; returns the stream id (None if already terminal)."""
        ts = now_ms()
        res = self.wait.script(
            self.r,
            self._dead,
            [
                keys.bind_record(key),
                keys.bind_history(key),
                self.delayed_key,
                keys.DEAD_LETTERS,
                self.watch_key,
                *self._finish_keys(key, ts),
            ],
            [
                code,
                message,
                request_id,
                "" if http_status is None else http_status,
                ts,
                _hist(hist),
                json.dumps(extra or {}),
                *self._finish_args(key, ts),
            ],
        )
        if isinstance(res, bytes | str):
            return _s(res)
        return None

    def delayed_due_at(self, key: str) -> float | None:
        score = self.r.zscore(self.delayed_key, key)
        return float(score) if score is not None else None


def _callback_fields(row: dict[str, Any]) -> list[str]:
    """A row's ``callback_url`` and ``callback_numbers`` ('1'/'0') as stored; none without a URL."""
    url = row.get("callback_url")
    return [url, "1" if row.get("callback_numbers") else "0"] if url else []


def _plain(client: redis.Redis, script: Any, script_keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """A script call without WAIT (the signature of :meth:`ReplicaWait.script`)."""
    return script(keys=script_keys, args=args)


def _hist(h: dict[str, Any] | None) -> str:
    return json.dumps(h, separators=(",", ":")) if h else ""
