-- Re-seal one dead letter (axb rekey). Stream entries cannot be changed in place: the entry is
-- added again, whole, with its request re-sealed and its dead_lettered_at kept (retention counts
-- from it), then the old entry is deleted and the record pointed at the new id.
-- KEYS: dead-letter stream, record. ARGV: entry id, request as read, new request, entry time ms.
-- Returns the new id, or false if the entry is gone or changed since it was read.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return false end
local fields = found[1][2]
local out, has_at = {}, false
for i = 1, #fields, 2 do
  local name, value = fields[i], fields[i + 1]
  if name == 'request' then
    if value ~= ARGV[2] then return false end
    value = ARGV[3]
  end
  if name == 'dead_lettered_at' and value ~= '' then has_at = true end
  if name ~= 'dead_lettered_at' or value ~= '' then
    out[#out + 1] = name
    out[#out + 1] = value
  end
end
if not has_at then
  out[#out + 1] = 'dead_lettered_at'
  out[#out + 1] = ARGV[4]
end
local id = redis.call('XADD', KEYS[1], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], 'dlq_id') == ARGV[1] then redis.call('HSET', KEYS[2], 'dlq_id', id) end
return id
