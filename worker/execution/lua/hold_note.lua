-- Count vendor call outcomes cluster-wide and open the vendor hold when most calls fail.
-- KEYS: 1 outcome counts (hash, one field per second and kind), 2 the vendor hold, 3 the probe
--       lock.
-- ARGV: 1 answered calls, 2 failed calls (unreachable or 5xx), 3 window (s), 4 least failures
--       to open, 5 failure ratio to open (0..1), 6 reason, 7 code, 8 message, 9 the token of a
--       probe that failed ('' if none: its lock is freed for the next probe).
-- Returns the hold (JSON) if one is open after this call, else false.
if ARGV[9] ~= '' and redis.call('GET', KEYS[3]) == ARGV[9] then redis.call('DEL', KEYS[3]) end
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local ok, fail, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if ok > 0 then redis.call('HINCRBY', KEYS[1], sec .. ':ok', ok) end
if fail > 0 then redis.call('HINCRBY', KEYS[1], sec .. ':fail', fail) end
redis.call('EXPIRE', KEYS[1], window * 2 + 1)
if fail == 0 then return redis.call('GET', KEYS[2]) end
local held = redis.call('GET', KEYS[2])
if held then return held end
local oks, fails, old = 0, 0, {}
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  local s, kind = string.match(h[i], '^(%d+):(%a+)$')
  if s and tonumber(s) > sec - window then
    if kind == 'ok' then oks = oks + tonumber(h[i + 1]) else fails = fails + tonumber(h[i + 1]) end
  else
    old[#old + 1] = h[i]
  end
end
if #old > 0 then redis.call('HDEL', KEYS[1], unpack(old)) end
if fails >= tonumber(ARGV[4]) and fails >= tonumber(ARGV[5]) * (oks + fails) then
  local hold = cjson.encode({scope = 'vendor', reason = ARGV[6], code = ARGV[7], message = ARGV[8],
    since_ms = now_ms, until_ms = 0, failed = fails, answered = oks})
  redis.call('SET', KEYS[2], hold)
  return hold
end
return false
