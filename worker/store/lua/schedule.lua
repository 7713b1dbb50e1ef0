-- A retry: the record waits on the delay queue until due-ms, with what the attempt got.
-- KEYS: record, history, delayed. ARGV: status, due-ms, code, message, request_id, http, now,
--       keep-inflight(0/1), hist-json, throttled(0/1), outage(0/1: the attempt failed on the
--       vendor's side and is not counted against AXB_MAX_ATTEMPTS)
-- Returns 1 scheduled, 0 the record is final, -1 no record.
--! include statuses
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return -1 end
if axb_terminal(st) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'code', ARGV[3], 'message', ARGV[4],
  'request_id', ARGV[5], 'http_status', ARGV[6], 'updated_at', ARGV[7], 'next_at', ARGV[2])
if ARGV[8] == '0' then redis.call('HDEL', KEYS[1], 'inflight', 'inflight_at') end
if ARGV[10] == '1' then redis.call('HINCRBY', KEYS[1], 'throttles', 1) end
if ARGV[11] == '1' then redis.call('HINCRBY', KEYS[1], 'outages', 1) end
if ARGV[9] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[9])
  redis.call('EXPIRE', KEYS[2], redis.call('TTL', KEYS[1]))
end
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), redis.call('HGET', KEYS[1], 'key'))
return 1
