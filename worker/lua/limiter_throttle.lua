-- KEYS: tat_1, penalty_1, ..., tat_n, penalty_n
-- ARGV: slowdown, min_factor, recovery_us, retry_after_us (-1: none), holdoff_us,
--       then per scope tolerance_us
-- Returns the new factor of each scope (as text).
--! include limiter_common
local now = now_us()
local n = #KEYS / 2
local slowdown, min_factor = tonumber(ARGV[1]), tonumber(ARGV[2])
local recovery, retry_after = tonumber(ARGV[3]), tonumber(ARGV[4])
local holdoff = tonumber(ARGV[5])
local out = {}
for i = 1, n do
  local pkey = KEYS[2 * i]
  local last = tonumber(redis.call('HGET', pkey, 't'))
  local f = factor(pkey, now)
  -- One overload returns many throttled answers at once: reduce at most once per hold-off.
  if not last or now - last >= holdoff then
    f = f * slowdown
    if f < min_factor then f = min_factor end
    redis.call('HSET', pkey, 'f', string.format('%.17g', f), 't', string.format('%.0f', now),
               'r', string.format('%.0f', recovery))
    redis.call('PEXPIRE', pkey, math.ceil(recovery / 1000) + 1)
  end
  if retry_after >= 0 then
    local target = now + retry_after + tonumber(ARGV[5 + i])
    local tat = tonumber(redis.call('GET', KEYS[2 * i - 1]) or 0)
    if target > tat then set_tat(KEYS[2 * i - 1], target, now) end
  end
  out[i] = string.format('%.17g', f)
end
return out
