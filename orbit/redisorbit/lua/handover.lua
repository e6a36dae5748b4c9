-- handover: ARGV node, epoch, generation, then orbits. A node stopping
-- leaves each orbit it holds whose call another node can take over as an
-- orphan (as if it had died) and tells the other nodes. Returns the
-- orbits it left.
local node, epoch, generation = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
local tag, out = node .. '|' .. epoch, {}
for i = 4, #ARGV do
  local o = ARGV[i]
  if redis.call('HGET', K_HELD, o) == tag and portable(o) then
    orphan(o, node, now)
    out[#out + 1] = o
  end
end
if #out > 0 then
  redis.call('PUBLISH', K_EVENTS, cjson.encode({ kind = 'handover', node = node, orphans = out }))
end
return out
