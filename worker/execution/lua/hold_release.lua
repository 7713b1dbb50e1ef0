-- The vendor answered: every key of one queue held by the vendor hold is due now.
-- KEYS: 1 the queue's held set, 2 the queue's delay set. Only keys still waiting on the delay
-- set are moved (XX): a key that finished or is running meanwhile is left alone.
-- Returns how many keys were released.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = 0
while true do
  local part = redis.call('ZRANGE', KEYS[1], 0, 999)
  if #part == 0 then break end
  local args = {}
  for _, k in ipairs(part) do
    args[#args + 1] = now
    args[#args + 1] = k
  end
  n = n + redis.call('ZADD', KEYS[2], 'XX', 'CH', unpack(args))
  redis.call('ZREM', KEYS[1], unpack(part))
end
return n
