-- reassert: ARGV node, epoch, generation, then orbits. After Redis lost
-- the lot (restarted empty), a node claims again the orbits its calls
-- still sit in. Returns those it could not get back: held by another node.
local node, epoch, generation = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
local lost = {}
for i = 4, #ARGV do
  local o = ARGV[i]
  local holder = redis.call('HGET', K_HELD, o)
  if holder ~= node .. '|' .. epoch then
    if holder or not redis.call('ZSCORE', K_FREE, o) then
      lost[#lost + 1] = o
    else
      claim(o, node, epoch)
    end
  end
end
return lost
