-- Cancel a bind that no request of it can have bound (begin_attempt, try_cancel): it ends
-- cancelled with the code given, leaves the delay queue and the watchdog, and the terminal tail
-- runs (finished.lua).
--! include statuses
--! include finished
local function axb_cancel(rec, key, by, code, now, delayed, watch)
  redis.call('HSET', rec, 'status', CANCELLED, 'code', code,
    'message', 'cancelled by ' .. by .. ' before any request could bind', 'cancelled_at', now,
    'updated_at', now)
  redis.call('ZREM', delayed, key)
  redis.call('ZREM', watch, key)
  axb_finished(rec, CANCELLED, delayed, watch, now)
end
