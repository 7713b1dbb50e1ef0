-- KEYS: record, history, delayed, watch, lease, +finish. ARGV: result-json, request_id, now,
--       expire-at-seconds, hist-json, lease token ('' : keep the lease and the start count), +finish
--! include statuses
--! include finished
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
-- 'cancelled' is not refused: a binding that was made is always recorded (never orphaned).
if st == SUCCEEDED or st == DEAD_LETTERED then return 0 end
redis.call('HSET', KEYS[1], 'status', SUCCEEDED, 'result', ARGV[1], 'request_id', ARGV[2],
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
axb_finished(KEYS[1], SUCCEEDED, KEYS[3], KEYS[4], ARGV[3])
return 1
