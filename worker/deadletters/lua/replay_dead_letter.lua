-- Replay one dead letter (worker.deadletters): its record goes back to pending, history kept,
-- and is watched again; a record gone meanwhile is written again from the entry.
-- KEYS: record, history, watch. ARGV: 1 key, 2 task_id, 3 request (sealed), 4 pool, 5 now ms,
--       6 expires_at ms, 7 ttl s, 8 deadline ms, 9 action, 10 entry id, 11 hist-json, 12 watch-due ms.
-- Returns 1 replayed, 2 the record is live (pending/retrying: left alone), 3 it has succeeded.
--! include statuses
local rec = KEYS[1]
local st = redis.call('HGET', rec, 'status')
if st == PENDING or st == RETRYING then return 2 end
if st == SUCCEEDED then return 3 end
if not st then
  redis.call('HSET', rec, 'key', ARGV[1], 'task_id', ARGV[2], 'request', ARGV[3], 'fingerprint', '',
    'pool', ARGV[4], 'created_at', ARGV[5], 'expires_at', ARGV[6], 'action', ARGV[9])
  redis.call('EXPIRE', rec, tonumber(ARGV[7]))
end
redis.call('HSET', rec, 'status', PENDING, 'attempts', 0, 'throttles', 0, 'starts', 0, 'published', 0,
  'deadline', ARGV[8], 'updated_at', ARGV[5], 'code', 'axb.REPLAYED', 'message', 'replayed from ' .. ARGV[10])
redis.call('HINCRBY', rec, 'replays', 1)
redis.call('HDEL', rec, 'inflight', 'inflight_at', 'dlq_id', 'next_at')
redis.call('RPUSH', KEYS[2], ARGV[11])
local ttl = redis.call('PTTL', rec)
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('ZADD', KEYS[3], tonumber(ARGV[12]), ARGV[1])
return 1
