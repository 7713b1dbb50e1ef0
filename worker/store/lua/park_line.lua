-- A scope's line of parked keys (BindStore.park): one key per step, after the line's end.
-- KEYS: the scope's park line. ARGV: now ms, earliest ms, step ms, count.
-- Returns when the first of ``count`` keys is due; the line then ends ``count`` steps later.
local now, earliest = tonumber(ARGV[1]), tonumber(ARGV[2])
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
if start < earliest then start = earliest end
local finish = start + tonumber(ARGV[3]) * tonumber(ARGV[4])
local ttl = math.max(1000, math.ceil(finish - now) + 1000)
redis.call('SET', KEYS[1], string.format('%.0f', finish), 'PX', ttl)
return string.format('%.0f', start)
