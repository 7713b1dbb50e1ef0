-- Undo a begin whose call did not go out after all (no rate-limit slot): the attempt is not
-- counted, and a first attempt's request is forgotten (a re-sent one stays: its fate is unknown).
-- KEYS: record. ARGV: attempt, first (0/1).
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '-1') ~= tonumber(ARGV[1]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
if ARGV[2] == '1' then redis.call('HDEL', KEYS[1], 'inflight', 'inflight_at') end
if ARGV[1] == '1' then redis.call('HDEL', KEYS[1], 'first_attempt_at') end
return 1
