-- Remove one dead letter for good (purge, retention, forget), with the personal data it left
-- behind: its history, and the request of its record while the record still stands for this
-- dead letter (a replayed record, live again, keeps both). The record's status stays, so the key
-- still answers dead_lettered and is never bound again by accident.
-- KEYS: dead-letter stream, record, history. ARGV: entry id, now ms, has-key (0/1).
-- Returns 1 if the entry was there, else 0.
--! include statuses
local n = redis.call('XDEL', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
  local r = redis.call('HMGET', KEYS[2], 'status', 'dlq_id')
  if not r[1] then
    redis.call('DEL', KEYS[3])
  elseif r[1] == DEAD_LETTERED and r[2] == ARGV[1] then
    redis.call('DEL', KEYS[3])
    redis.call('HDEL', KEYS[2], 'request', 'inflight', 'inflight_at')
    redis.call('HSET', KEYS[2], 'redacted_at', ARGV[2])
  end
end
return n
