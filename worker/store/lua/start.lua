-- The start of a delivery, in one round trip. KEYS: record, lease, delayed, account hold,
-- vendor hold. ARGV: key, lease token, lease ms, now ms.
-- Returns {what (worker.store.StartOutcome), record hash (flat), starts, hold}: what = 0 no record, 1 terminal, 2 a stale
-- copy (the delay queue owns the key until it is due), 3 busy (another delivery holds the
-- lease: looked at again once it has run out), 4 go (lease taken, ``starts`` counted); hold =
-- the account's hold, else the vendor's, else false (see worker/execution/hold.py).
--! include statuses
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {0, {}, 0, false} end
local st = redis.call('HGET', KEYS[1], 'status')
if axb_terminal(st) then return {1, h, 0, false} end
local now = tonumber(ARGV[4])
local due = redis.call('ZSCORE', KEYS[3], ARGV[1])
if due and tonumber(due) > now + 50 then return {2, h, 0, false} end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', tonumber(ARGV[3])) then
  redis.call('ZADD', KEYS[3], 'GT', now + tonumber(ARGV[3]), ARGV[1])
  return {3, h, 0, false}
end
local starts = redis.call('HINCRBY', KEYS[1], 'starts', 1)
return {4, h, starts, redis.call('GET', KEYS[4]) or redis.call('GET', KEYS[5])}
