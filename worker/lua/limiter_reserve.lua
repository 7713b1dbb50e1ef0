-- KEYS: tat_1, penalty_1, ..., tat_n, penalty_n
-- ARGV: max_wait_us, then per scope: base interval (µs, float), tolerance (µs, integer)
-- Returns {granted (0/1), wait_us}.
--! include limiter_common
local now = now_us()
local n = #KEYS / 2
local max_wait = tonumber(ARGV[1])
local tats, incs = {}, {}
local allowed = now
for i = 1, n do
  local base, tau = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  incs[i] = math.ceil(base / factor(KEYS[2 * i], now))
  local tat = tonumber(redis.call('GET', KEYS[2 * i - 1]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  if tat - tau > allowed then allowed = tat - tau end
end
local wait = allowed - now
if wait > max_wait then return {0, wait} end
for i = 1, n do
  local tat = tats[i]
  if allowed > tat then tat = allowed end
  set_tat(KEYS[2 * i - 1], tat + incs[i], now)
end
return {1, wait}
