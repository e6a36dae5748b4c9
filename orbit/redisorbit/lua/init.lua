-- init: ARGV orbits-spec, policy, generation, settle_ms, then every orbit in
-- table order. Stores the lot's table when Redis has none and returns what
-- Redis holds: {orbits, policy, generation, created (1 or 0)}.
local spec, policy, generation, settle_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local have = redis.call('HMGET', K_CONFIG, 'orbits', 'policy', 'generation')
if have[1] then
  return { have[1], have[2], have[3], 0 }
end
local now = now_ms()
local total = #ARGV - 4
for i = 5, #ARGV do
  local ordinal = i - 5
  redis.call('HSET', K_ORDINAL, ARGV[i], ordinal)
  local score = ordinal
  if policy == 'lru' then score = ordinal - total end
  redis.call('ZADD', K_FREE, score, ARGV[i])
end
redis.call('HSET', K_CONFIG, 'orbits', spec, 'policy', policy, 'generation', generation,
  'created', now, 'settle_until', now + settle_ms)
return { spec, policy, generation, 1 }
