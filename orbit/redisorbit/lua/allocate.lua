-- allocate: ARGV node, epoch, generation, policy. Takes the free orbit the
-- policy chooses for the node. Dead nodes are reaped here only when no
-- orbit is free (the renewal loop reaps them anyway), so a claim stays a
-- handful of commands.
local node, epoch, generation, policy = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
if settling(now) then return redis.error_reply('CALLPARK_SETTLING') end
local function pick()
  if policy == 'random' then
    return redis.call('ZRANDMEMBER', K_FREE)
  end
  return redis.call('ZRANGE', K_FREE, 0, 0)[1]
end
local o = pick()
if not o and #reap(now) > 0 then o = pick() end
if not o then return redis.error_reply('CALLPARK_FULL') end
claim(o, node, epoch)
return o
