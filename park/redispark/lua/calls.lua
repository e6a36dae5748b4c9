-- calls: every record of the lot whose node still holds its orbit, or
-- that waits to be taken over, as {orbit, record, ...}: what a node
-- re-reads after (re)subscribing, since pub/sub drops what was said while
-- it was away.
local out = {}
local all = redis.call('HGETALL', K_CALLS)
for i = 1, #all, 2 do
  local o, rec = all[i], all[i + 1]
  if redis.call('HEXISTS', K_HELD, o) == 1 or redis.call('HEXISTS', K_ORPHANS, o) == 1 then
    out[#out + 1] = o
    out[#out + 1] = rec
  end
end
return out
