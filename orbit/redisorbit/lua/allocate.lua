-- allocate: ARGV node, epoch, generation. Takes the free orbit the policy
-- chooses for the node.
local node, epoch, generation = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
reap(now)
if settling(now) then return redis.error_reply('CALLPARK_SETTLING') end
local o
if redis.call('HGET', K_CONFIG, 'policy') == 'random' then
  o = redis.call('ZRANDMEMBER', K_FREE)
else
  o = redis.call('ZRANGE', K_FREE, 0, 0)[1]
end
if not o then return redis.error_reply('CALLPARK_FULL') end
claim(o, node, epoch)
return o
