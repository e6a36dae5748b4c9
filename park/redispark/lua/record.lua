-- record: ARGV node, epoch, generation, orbit, record ('' when the call
-- ended), message ('' to publish nothing). Stores (or deletes) the record of the call parked in
-- the orbit and publishes the message, if this incarnation of the node
-- holds the orbit: a node that lost it writes nothing. An end is published
-- even when the orbit has gone (released first, or reaped): watchers match
-- it by park ID. Returns 1 when published.
local node, epoch, generation, o, rec, msg = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local g = redis.call('HGET', K_CONFIG, 'generation')
if not g then return redis.error_reply('CALLPARK_NOTABLE') end
if g ~= generation then return redis.error_reply('CALLPARK_RESET') end
if redis.call('HGET', K_HELD, o) == node .. '|' .. epoch then
  if rec == '' then
    redis.call('HDEL', K_CALLS, o)
  else
    redis.call('HSET', K_CALLS, o, rec)
  end
elseif rec ~= '' then
  return 0
end
if msg ~= '' then redis.call('PUBLISH', K_EVENTS, msg) end
return 1
