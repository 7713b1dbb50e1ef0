-- Put back on the delay queue the claimed keys older than ARGV[1] ms (their claimer died before
-- publishing them); a key already back on the queue keeps its due time (NX).
-- KEYS: delayed, claimed. ARGV: age ms. Returns how many were put back.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[1]))
for _, k in ipairs(stale) do
  redis.call('ZREM', KEYS[2], k)
  redis.call('ZADD', KEYS[1], 'NX', now, k)
end
return #stale
