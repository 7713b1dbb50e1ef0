-- KEYS: record, history, delayed, watch, account hold, vendor hold, vendor probe lock, +finish.
-- ARGV: signed-json, now, check the holds (0/1), probe token ('' : not the probe), the code of a
--       cancelled bind (errors.CANCELLED), +finish.
-- Returns (worker.store.Begin) the attempt number, -1 (terminal: do not call), -2 (cancelled now: do not call),
-- -3 (calls are on hold, for the account or the vendor, and this delivery is not the vendor
-- hold's probe: do not call; nothing written). (+finish: see finished.lua.)
--! include statuses
--! include cancel
local r = redis.call('HMGET', KEYS[1], 'status', 'cancel_requested', 'inflight', 'key')
local st = r[1]
if not st or axb_terminal(st) then return -1 end
if ARGV[3] == '1' then
  if redis.call('EXISTS', KEYS[5]) == 1 then return -3 end
  if redis.call('EXISTS', KEYS[6]) == 1 and (ARGV[4] == '' or redis.call('GET', KEYS[7]) ~= ARGV[4]) then
    return -3
  end
end
if r[2] and r[2] ~= '' and (not r[3] or r[3] == '') then
  -- An unbind was accepted and no request of ours may have bound: never send one.
  axb_cancel(KEYS[1], r[4], r[2], ARGV[5], ARGV[2], KEYS[3], KEYS[4])
  return -2
end
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 'inflight', ARGV[1], 'inflight_at', ARGV[2])
end
redis.call('HSETNX', KEYS[1], 'first_attempt_at', ARGV[2])
redis.call('HSET', KEYS[1], 'last_attempt_at', ARGV[2], 'updated_at', ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'attempts', 1)
