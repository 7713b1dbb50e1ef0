-- Create an API token (worker.tokens.TokenStore.create): the name is claimed and the record
-- written in one step, so two creations of one name cannot both succeed.
-- KEYS: names hash, tokens hash.  ARGV: name, token id, record JSON.
-- Returns 1 when created, 0 when the name already has a live token.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
