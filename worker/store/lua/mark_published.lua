-- KEYS: records. Marks each record that still exists as published (its message is on the queue).
for _, rec in ipairs(KEYS) do
  if redis.call('EXISTS', rec) == 1 then redis.call('HSET', rec, 'published', 1) end
end
return #KEYS
