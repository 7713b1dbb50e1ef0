-- An operation succeeded (or had nothing to do); its effect on the bind, in the same step.
-- KEYS: op record, op history, delayed, watch, target record, target history, +finish.
-- ARGV: 1 result-json, 2 request_id, 3 now, 4 op expire-at s, 5 hist-json, 6 code, 7 message,
--       8 effect ('' | 'unbound' | 'extended'), 9 target expires_at ms, 10 target expire-at s,
--       11 expiration text, +finish
--! include statuses
--! include finished
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if axb_terminal(st) then return 0 end
redis.call('HSET', KEYS[1], 'status', SUCCEEDED, 'result', ARGV[1], 'request_id', ARGV[2],
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
axb_finished(KEYS[1], SUCCEEDED, KEYS[3], KEYS[4], ARGV[3])
return 1
