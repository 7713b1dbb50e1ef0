-- Erase the personal data of one record (axb forget): its request and signed request go, its
-- history too. A bind not yet finished and with no request in flight ends cancelled, never to be
-- sent; one with a request in flight is left alone (its outcome is open: forget again later).
-- KEYS: record, history, delayed, watch. ARGV: now ms, request as read, code.
-- Returns 1 erased, 2 erased and cancelled, 0 no record, -1 in flight, -2 changed since it was read.
--! include statuses
local r = redis.call('HMGET', KEYS[1], 'status', 'inflight', 'key', 'request')
if not r[1] then return 0 end
if (r[4] or '') ~= ARGV[2] then return -2 end
local st = r[1]
local cancelled = 0
if not axb_terminal(st) then
  if r[2] and r[2] ~= '' then return -1 end
  redis.call('HSET', KEYS[1], 'status', CANCELLED, 'code', ARGV[3],
    'message', 'erased on a data subject request before any request could bind',
    'cancelled_at', ARGV[1])
  redis.call('ZREM', KEYS[3], r[3])
  redis.call('ZREM', KEYS[4], r[3])
  cancelled = 1
end
redis.call('HDEL', KEYS[1], 'request', 'inflight', 'inflight_at')
redis.call('HSET', KEYS[1], 'forgotten_at', ARGV[1], 'updated_at', ARGV[1])
redis.call('DEL', KEYS[2])
return 1 + cancelled
