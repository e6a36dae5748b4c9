-- release: ARGV node, epoch, generation, orbit. Frees the orbit if this
-- incarnation of the node holds it; never an orbit that was taken from it.
local node, epoch, generation, o = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local g = redis.call('HGET', K_CONFIG, 'generation')
if not g then return redis.error_reply('CALLPARK_NOTABLE') end
if g ~= generation then return redis.error_reply('CALLPARK_RESET') end
if redis.call('HGET', K_HELD, o) ~= node .. '|' .. epoch then
  if redis.call('HEXISTS', K_ORDINAL, o) == 0 then return redis.error_reply('CALLPARK_UNKNOWN') end
  return redis.error_reply('CALLPARK_NOTINUSE')
end
redis.call('HDEL', K_HELD, o)
redis.call('SREM', orbits_key(node), o)
free(o, now_ms())
return 'OK'
