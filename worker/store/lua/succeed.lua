-- A bind succeeded: its result stored, and (with a lease token) its delivery ended, in one step.
-- KEYS: record, history, delayed, watch, lease, +finish. ARGV: result-json, request_id, now,
--       expire-at-seconds, hist-json, lease token ('' : keep the lease and the start count), +finish
-- Returns 1 succeeded, 0 the record is final (a cancelled one is recorded all the same), -1 no record.
--! include statuses
--! include succeeded
--! include finished
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
-- 'cancelled' is not refused: a binding that was made is always recorded (never orphaned).
if st == SUCCEEDED or st == DEAD_LETTERED then return 0 end
axb_succeeded(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], 'OK', '', ARGV[3], ARGV[4], ARGV[5])
if ARGV[6] ~= '' then
  -- The delivery is over: its start is no longer a death to count, and its lease is freed.
  redis.call('HSET', KEYS[1], 'starts', 0)
  if redis.call('GET', KEYS[5]) == ARGV[6] then redis.call('DEL', KEYS[5]) end
end
axb_finished(KEYS[1], SUCCEEDED, KEYS[3], KEYS[4], ARGV[3])
return 1
