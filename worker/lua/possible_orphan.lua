-- Record one possible orphan (worker.orphans): the ledger entry, once per first copy, and the
-- bind's record marked possible_orphan, in one step.
-- KEYS: the entry, the ledger's index, the bind's record.
-- ARGV: 1 orphan id, 2 key, 3 request_id, 4 pool, 5 sent_at ms, 6 expires_at ms, 7 note, 8 ttl s.
-- Returns 1 recorded now, 0 recorded before (its fields kept; a non-empty note replaces the note).
local new = redis.call('HSETNX', KEYS[1], 'key', ARGV[2])
if new == 1 then
  redis.call('HSET', KEYS[1], 'request_id', ARGV[3], 'pool', ARGV[4], 'sent_at', ARGV[5],
    'expires_at', ARGV[6], 'note', ARGV[7])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[8]))
  redis.call('ZADD', KEYS[2], tonumber(ARGV[6]), ARGV[1])
elseif ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'note', ARGV[7])
end
-- Never creates a record: one that has gone (a purged or expired bind) stays gone.
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'possible_orphan', 1)
end
return new
