-- KEYS: record, delayed, watch, +finish. ARGV: by (the unbind's key), now, the code of a cancelled
-- bind (errors.CANCELLED), +finish.
-- Returns (worker.store.Cancel) 1 cancelled now; 0 already terminal; 2 a request is in flight (wait); -1 no record.
--! include statuses
--! include finished
local r = redis.call('HMGET', KEYS[1], 'status', 'inflight', 'key')
local st = r[1]
if not st then return -1 end
if axb_terminal(st) then return 0 end
redis.call('HSETNX', KEYS[1], 'cancel_requested', ARGV[1])
if r[2] and r[2] ~= '' then return 2 end
redis.call('HSET', KEYS[1], 'status', CANCELLED, 'code', ARGV[3],
  'message', 'cancelled by ' .. ARGV[1] .. ' before any request could bind', 'cancelled_at', ARGV[2],
  'updated_at', ARGV[2])
redis.call('ZREM', KEYS[2], r[3])
redis.call('ZREM', KEYS[3], r[3])
axb_finished(KEYS[1], CANCELLED, KEYS[2], KEYS[3], ARGV[2])
return 1
