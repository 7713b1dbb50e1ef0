-- A key waits out the vendor hold: it joins its queue's held set, released all at once when a
-- probe gets an answer. One held key per probe interval is due soon (the next probe); the others
-- come back only after the recheck interval (a safety net: the release normally comes first).
-- KEYS: 1 the vendor hold, 2 the queue's held set, 3 the next-probe marker, 4 the set of queues
--       with held keys.
-- ARGV: 1 key, 2 probe interval ms, 3 recheck ms, 4 queue name.
-- Returns when the key is due (ms); now when the hold is over (go at once).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[1]) == 0 then return now end
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return now + tonumber(ARGV[2])
end
return now + tonumber(ARGV[3])
