-- An operation succeeded (or had nothing to do); its effect on the bind, in the same step.
-- KEYS: op record, op history, delayed, watch, target record, target history, +finish.
-- ARGV: 1 result-json, 2 request_id, 3 now, 4 op expire-at s, 5 hist-json, 6 code, 7 message,
--       8 effect ('' | 'unbound' | 'extended'), 9 target expires_at ms, 10 target expire-at s,
--       11 expiration text, +finish
-- Returns 1 succeeded, 0 the operation is final, -1 no record.
--! include statuses
--! include succeeded
--! include finished
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if axb_terminal(st) then return 0 end
local k = axb_succeeded(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[6], ARGV[7], ARGV[3],
  ARGV[4], ARGV[5])
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
axb_finished(KEYS[1], SUCCEEDED, KEYS[3], KEYS[4], ARGV[3])
return 1
