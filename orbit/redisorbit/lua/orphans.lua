-- orphans: every orphan as {orbit, from, age_ms, ...}, after a reap (so a
-- node whose lease just ran out has left its calls as orphans).
local now = now_ms()
reap(now)
local out = {}
local all = redis.call('HGETALL', K_ORPHANS)
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sep = string.find(v, '|', 1, true)
  out[#out + 1] = all[i]
  out[#out + 1] = string.sub(v, 1, sep - 1)
  out[#out + 1] = tostring(now - tonumber(string.sub(v, sep + 1)))
end
return out
