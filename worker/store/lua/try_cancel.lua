-- KEYS: record, delayed, watch, +finish. ARGV: by (the unbind's key), now, the code of a cancelled
-- bind (errors.CANCELLED), +finish.
-- Returns (worker.store.Cancel) 1 cancelled now; 0 already terminal; 2 a request is in flight (wait); -1 no record.
--! include statuses
--! include cancel
local r = redis.call('HMGET', KEYS[1], 'status', 'inflight', 'key')
local st = r[1]
if not st then return -1 end
if axb_terminal(st) then return 0 end
redis.call('HSETNX', KEYS[1], 'cancel_requested', ARGV[1])
if r[2] and r[2] ~= '' then return 2 end
axb_cancel(KEYS[1], r[3], ARGV[1], ARGV[3], ARGV[2], KEYS[2], KEYS[3])
return 1
