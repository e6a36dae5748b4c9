-- record: ARGV node, epoch, generation, then triples of orbit, record and
-- message, in order. For each: stores the record of the call parked in the
-- orbit ('' deletes it) and publishes the message ('' publishes nothing),
-- if this incarnation of the node holds the orbit: a node that lost it
-- writes nothing. An orbit '' is a message alone (a plain PUBLISH), and an
-- end is published even when the orbit has gone (released first, or
-- reaped): watchers match it by park ID. One script for a whole batch:
-- under load, one call instead of one per event. Returns how many it
-- published.
local node, epoch, generation = ARGV[1], ARGV[2], ARGV[3]
local g = redis.call('HGET', K_CONFIG, 'generation')
if not g then return redis.error_reply('CALLPARK_NOTABLE') end
if g ~= generation then return redis.error_reply('CALLPARK_RESET') end
local tag, published = node .. '|' .. epoch, 0
for i = 4, #ARGV - 2, 3 do
  local o, rec, msg = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ours = o == '' or redis.call('HGET', K_HELD, o) == tag
  if o ~= '' and ours then
    if rec == '' then
      redis.call('HDEL', K_CALLS, o)
    else
      redis.call('HSET', K_CALLS, o, rec)
    end
  end
  if msg ~= '' and (ours or rec == '') then
    redis.call('PUBLISH', K_EVENTS, msg)
    published = published + 1
  end
end
return published
