-- Mark a record succeeded (succeed, op_succeed): its result and code, the history entry, the TTL
-- of both, and off the delay queue and the watchdog. Returns the record's key. The caller runs
-- the terminal tail (axb_finished) once its own writes are done.
--! include statuses
local function axb_succeeded(rec, hist, delayed, watch, result, request_id, code, message, now,
                             expire_at_s, hist_entry)
  redis.call('HSET', rec, 'status', SUCCEEDED, 'result', result, 'request_id', request_id,
    'code', code, 'message', message, 'succeeded_at', now, 'updated_at', now)
  redis.call('HDEL', rec, 'inflight', 'inflight_at')
  if hist_entry ~= '' then redis.call('RPUSH', hist, hist_entry) end
  redis.call('EXPIREAT', rec, tonumber(expire_at_s))
  redis.call('EXPIREAT', hist, tonumber(expire_at_s))
  local k = redis.call('HGET', rec, 'key')
  redis.call('ZREM', delayed, k)
  redis.call('ZREM', watch, k)
  return k
end
