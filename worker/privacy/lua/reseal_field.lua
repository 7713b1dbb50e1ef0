-- Rewrite one sealed field of a record (axb rekey), unless it changed since it was read.
-- KEYS: record. ARGV: field, value as read, new value. Returns 1 rewritten, 0 changed meanwhile.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
