-- release: ARGV node, epoch, generation, then orbits. Frees each orbit
-- this incarnation of the node holds; never one that was taken from it.
-- Returns, per orbit, 'OK', 'NOTINUSE' or 'UNKNOWN'.
local node, epoch, generation = ARGV[1], ARGV[2], ARGV[3]
local g = redis.call('HGET', K_CONFIG, 'generation')
if not g then return redis.error_reply('CALLPARK_NOTABLE') end
if g ~= generation then return redis.error_reply('CALLPARK_RESET') end
local tag, now, out = node .. '|' .. epoch, now_ms(), {}
for i = 4, #ARGV do
  local o = ARGV[i]
  if redis.call('HGET', K_HELD, o) == tag then
    redis.call('HDEL', K_HELD, o)
    redis.call('SREM', orbits_key(node), o)
    free(o, now)
    out[#out + 1] = 'OK'
  elseif redis.call('HEXISTS', K_ORDINAL, o) == 0 then
    out[#out + 1] = 'UNKNOWN'
  else
    out[#out + 1] = 'NOTINUSE'
  end
end
return out
