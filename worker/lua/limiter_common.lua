-- Shared Lua: Redis time in µs and the current penalty factor of one scope.
if redis.replicate_commands then redis.replicate_commands() end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function factor(pkey, now)
  local p = redis.call('HMGET', pkey, 'f', 't', 'r')
  local f0, t0, rec = tonumber(p[1]), tonumber(p[2]), tonumber(p[3])
  if not f0 or not t0 or not rec or rec <= 0 then return 1.0 end
  local elapsed = now - t0
  if elapsed >= rec then return 1.0 end
  if elapsed < 0 then elapsed = 0 end
  return f0 + (1.0 - f0) * elapsed / rec
end
local function set_tat(key, tat, now)
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
