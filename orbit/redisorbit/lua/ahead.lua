-- ahead: ARGV node, epoch, generation, policy, want, floor, n, then n
-- orbits the node has put calls in since the last time (claimed ahead,
-- now used), then orbits it keeps ahead again (released, not freed).
-- Claims up to want more free orbits for the node to use without asking
-- (never leaving floor or fewer free), none that a directed park asked
-- for. Returns {free orbits left, {claimed},
-- {orbits it holds ahead that a directed park elsewhere asked for}}.
local node, epoch, generation, policy = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local want, floor, n = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
local tag = node .. '|' .. epoch
for i = 8, #ARGV do
  local o = ARGV[i]
  if redis.call('HGET', K_HELD, o) == tag then
    if i < 8 + n then
      redis.call('SREM', K_AHEAD, o)
      redis.call('SREM', K_WANTED, o)
    else
      redis.call('SADD', K_AHEAD, o)
    end
  end
end
local wanted = {}
for _, o in ipairs(redis.call('SMEMBERS', K_WANTED)) do
  if redis.call('HGET', K_HELD, o) == tag and redis.call('SISMEMBER', K_AHEAD, o) == 1 then
    wanted[#wanted + 1] = o
  end
end
-- An orbit a directed park asked for stays free for it.
local got = {}
local take = math.min(want, redis.call('ZCARD', K_FREE) - floor)
if take > 0 and not settling(now) then
  local pool
  if policy == 'random' then
    pool = redis.call('ZRANDMEMBER', K_FREE, take + 8)
  else
    pool = redis.call('ZRANGE', K_FREE, 0, take + 7)
  end
  for _, o in ipairs(pool) do
    if #got == take then break end
    if redis.call('SISMEMBER', K_WANTED, o) == 0 then
      claim(o, node, epoch)
      redis.call('SADD', K_AHEAD, o)
      got[#got + 1] = o
    end
  end
end
return { redis.call('ZCARD', K_FREE), got, wanted }
