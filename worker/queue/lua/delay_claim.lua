-- Claim the keys of the delay queue that are due (worker.delay.DelayQueue.claim): each moves to
-- the claimed set, stamped now, until it is published.
-- KEYS: delayed, claimed. ARGV: at most this many. Returns the keys claimed.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, k in ipairs(due) do
  redis.call('ZREM', KEYS[1], k)
  redis.call('ZADD', KEYS[2], now, k)
end
return due
