-- Give up on a record: an entry on the dead-letter stream (with its history), the record marked.
-- KEYS: record, history, delayed, dlq, watch, +finish. ARGV: code, message, request_id, http, now,
--       hist-json, extra-json, +finish
-- Returns the stream id, 0 the record is final, -1 no record.
--! include statuses
--! include finished
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if axb_terminal(st) then return 0 end
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
redis.call('HSET', KEYS[1], 'status', DEAD_LETTERED, 'code', ARGV[1], 'message', ARGV[2],
  'request_id', ARGV[3], 'http_status', ARGV[4], 'dead_lettered_at', ARGV[5],
  'updated_at', ARGV[5], 'dlq_id', id)
-- The outcome is settled: the signed request (both numbers, the signature) is never sent again.
redis.call('HDEL', KEYS[1], 'inflight', 'inflight_at')
-- A history started by this very dead letter (a first call refused) lives no longer than its record.
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('ZREM', KEYS[3], r[1])
redis.call('ZREM', KEYS[5], r[1])
axb_finished(KEYS[1], DEAD_LETTERED, KEYS[3], KEYS[5], ARGV[5])
return id
