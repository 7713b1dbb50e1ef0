-- Create a lifecycle operation (unbind / extend) and mark its bind, in one step.
-- KEYS: op record, watch, target (bind) record.
-- ARGV: 1 key, 2 task_id, 3 request, 4 fingerprint, 5 pool, 6 now, 7 deadline, 8 expires_at,
--       9 ttl_s, 10 action, 11 watch-due, 12 target key ('' if none), 13 callback_url ('' if none),
--       14 callback_numbers
-- Returns {created(0/1/2 = re-armed), fingerprint, status, published, seq}.
--! include statuses
local target = ARGV[12]
local has_target = target ~= '' and redis.call('EXISTS', KEYS[3]) == 1
if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = redis.call('HMGET', KEYS[1], 'fingerprint', 'status', 'published', 'seq')
  if ARGV[10] == 'extend' and has_target and r[2] ~= DEAD_LETTERED then
    local latest = tonumber(redis.call('HGET', KEYS[3], 'extend_seq') or '0')
    if tonumber(r[4] or '0') < latest then
      -- A later extend was asked for since this one: asking again makes this one the latest.
      local n = redis.call('HINCRBY', KEYS[3], 'extend_seq', 1)
      redis.call('HSET', KEYS[1], 'seq', n, 'status', PENDING, 'attempts', 0, 'published', 0,
        'code', '', 'message', 'asked for again after a later extend', 'updated_at', ARGV[6],
        'deadline', ARGV[7], 'starts', 0)
      redis.call('HDEL', KEYS[1], 'result', 'succeeded_at', 'next_at')
      redis.call('ZADD', KEYS[2], tonumber(ARGV[11]), ARGV[1])
      return {2, r[1] or '', PENDING, '0', tostring(n)}
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
  'deadline', ARGV[7], 'expires_at', ARGV[8], 'status', PENDING, 'attempts', 0,
  'published', 0, 'action', ARGV[10], 'target', target, 'seq', seq)
if ARGV[13] ~= '' then redis.call('HSET', KEYS[1], 'callback_url', ARGV[13], 'callback_numbers', ARGV[14]) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[9]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[11]), ARGV[1])
return {1, ARGV[4], PENDING, '0', tostring(seq)}
