-- What happens when a record becomes terminal (succeeded, dead_lettered, cancelled): prepended
-- to every script of worker/store/lua/ that makes a record terminal, and called by it after its
-- write, in the same atomic step:
--   * a record with a callback_url gets the delivery of its completion callback: a delivery
--     record (action 'callback', no phone number in it: the body is built from the record when
--     it is sent), due at once on the delay queue, and watched by the watchdog (worker.callbacks);
--   * the new status is published on the record's done channel (keys.done_channel).
--
-- By convention the LAST two keys and the LAST four arguments of such a script belong to this
-- function (worker.store.BindStore._finish_keys / _finish_args):
--   KEYS[#KEYS-1] the delay queue's wake-up list (keys.delay_wake)
--   KEYS[#KEYS]   the record of the completion callback's delivery (keys.callback_job)
--   ARGV[#ARGV-3] the record's done channel (keys.done_channel)
--   ARGV[#ARGV-2] the delivery's key (keys.callback_job)
--   ARGV[#ARGV-1] when the watchdog first looks at the delivery (ms)
--   ARGV[#ARGV]   the delivery record's TTL (s)
local function axb_finished(rec, status, delayed, watch, now)
  local n = #ARGV
  local cb = redis.call('HMGET', rec, 'callback_url', 'callback_numbers', 'key', 'action')
  if cb[1] and cb[1] ~= '' and cb[4] ~= 'callback' then
    local job, job_rec = ARGV[n - 2], KEYS[#KEYS]
    if redis.call('EXISTS', job_rec) == 0 then
      redis.call('HSET', job_rec, 'key', job, 'action', 'callback', 'target', cb[3],
        'callback_url', cb[1], 'callback_numbers', cb[2] or '0', 'status', 'pending',
        'attempts', 0, 'published', 0, 'created_at', now, 'updated_at', now,
        'request', cjson.encode({IdempotencyKey = cb[3], Action = cb[4] or 'bind', Outcome = status}))
      redis.call('EXPIRE', job_rec, tonumber(ARGV[n]))
      redis.call('ZADD', delayed, tonumber(now), job)
      redis.call('ZADD', watch, tonumber(ARGV[n - 1]), job)
      -- Wake a pump now rather than at its next poll (the list is only a hint: bounded).
      redis.call('LPUSH', KEYS[#KEYS - 1], '1')
      redis.call('LTRIM', KEYS[#KEYS - 1], 0, 99)
    end
  end
  -- Per-minute outcome counts for the console's chart (keys.outcome_minute; kept 25 h).
  local cnt = 'axb:stats:min:' .. math.floor(tonumber(now) / 60000)
  local head = redis.call('HMGET', rec, 'action', 'code')
  if (head[1] or 'bind') == 'bind' then redis.call('HINCRBY', cnt, 'bind:' .. status, 1) end
  if status == 'dead_lettered' then redis.call('HINCRBY', cnt, 'dlq:' .. (head[2] or ''), 1) end
  redis.call('EXPIRE', cnt, 90000)
  redis.call('PUBLISH', ARGV[n - 3], status)
end
