-- Create many bind records in one call (a backfill's chunk).
-- KEYS: watch, then one record per row. ARGV: 1 now, 2 watch-due, 3 action, 4 the rows as JSON,
--       [[key, task_id, request, fingerprint, pool, deadline, expires_at, ttl_s
--         (, callback_url, callback_numbers)], ...] (all text).
-- Returns {flags, ...}: one character per row, '1' created or '0' already there; for each '0', in
-- row order, its fingerprint, status and published flag follow. A key twice in one call is
-- created by the first row and reported by the second.
--! include statuses
local rows = cjson.decode(ARGV[4])
local flags, out, watch = {}, {''}, {}
for i, row in ipairs(rows) do
  local rec = KEYS[i + 1]
  if redis.call('EXISTS', rec) == 1 then
    local r = redis.call('HMGET', rec, 'fingerprint', 'status', 'published')
    flags[i] = '0'
    out[#out + 1] = r[1] or ''
    out[#out + 1] = r[2] or ''
    out[#out + 1] = r[3] or '0'
  else
    redis.call('HSET', rec, 'key', row[1], 'task_id', row[2], 'request', row[3],
      'fingerprint', row[4], 'pool', row[5], 'created_at', ARGV[1], 'updated_at', ARGV[1],
      'deadline', row[6], 'expires_at', row[7], 'status', PENDING, 'attempts', 0,
      'published', 0, 'action', ARGV[3])
    if row[9] then redis.call('HSET', rec, 'callback_url', row[9], 'callback_numbers', row[10]) end
    redis.call('EXPIRE', rec, tonumber(row[8]))
    watch[#watch + 1] = ARGV[2]
    watch[#watch + 1] = row[1]
    flags[i] = '1'
    if #watch >= 1000 then
      redis.call('ZADD', KEYS[1], unpack(watch))
      watch = {}
    end
  end
end
if #watch > 0 then redis.call('ZADD', KEYS[1], unpack(watch)) end
out[1] = table.concat(flags)
return out
