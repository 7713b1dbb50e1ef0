-- Revoke the live API token of a name (worker.tokens.TokenStore.revoke): its record is kept,
-- marked revoked (verification refuses it from this moment), and the name is freed for a new token.
-- KEYS: names hash, tokens hash.  ARGV: name, revocation time (ms).
-- Returns {token id, revoked record JSON}, or false when the name has no live token.
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then
  return false
end
redis.call('HDEL', KEYS[1], ARGV[1])
local raw = redis.call('HGET', KEYS[2], id)
if not raw then
  return false
end
local rec = cjson.decode(raw)
rec['revoked_at'] = tonumber(ARGV[2])
raw = cjson.encode(rec)
redis.call('HSET', KEYS[2], id, raw)
return {id, raw}
