-- May this delivery call the vendor while the vendor hold is open? One probe at a time.
-- KEYS: 1 the vendor hold, 2 the probe lock. ARGV: 1 token, 2 lock ms.
-- Returns 2 (no hold any more: go), 1 (this delivery is the probe: go), 0 (held: wait).
if redis.call('EXISTS', KEYS[1]) == 0 then return 2 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then return 1 end
return 0
