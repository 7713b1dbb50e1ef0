-- Free a lease (a delivery's, or a bind's target lease) if this holder still has it.
-- KEYS: lease. ARGV: the holder's token. Returns 1 freed, 0 held by another or gone.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
