-- reserve: ARGV node, epoch, generation, orbit. Takes exactly that orbit
-- (directed park); an orbit held by a node whose lease ran out is reaped
-- first.
local node, epoch, generation, o = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
if settling(now) then return redis.error_reply('CALLPARK_SETTLING') end
if not redis.call('ZSCORE', K_FREE, o) then
  if redis.call('HEXISTS', K_ORDINAL, o) == 0 then return redis.error_reply('CALLPARK_UNKNOWN') end
  reap(now)
  if not redis.call('ZSCORE', K_FREE, o) then return redis.error_reply('CALLPARK_INUSE') end
end
claim(o, node, epoch)
return 'OK'
