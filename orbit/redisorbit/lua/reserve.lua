-- reserve: ARGV node, epoch, generation, orbit. Takes exactly that orbit
-- (directed park); an orbit held by a node whose lease ran out is reaped
-- first. An orbit another node claimed ahead, still without a call, is
-- asked of it (CALLPARK_AHEAD: that node gives it back within a moment
-- unless it puts a call there first).
local node, epoch, generation, o = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
if settling(now) then return redis.error_reply('CALLPARK_SETTLING') end
if not redis.call('ZSCORE', K_FREE, o) then
  if redis.call('HEXISTS', K_ORDINAL, o) == 0 then return redis.error_reply('CALLPARK_UNKNOWN') end
  reap(now)
  if not redis.call('ZSCORE', K_FREE, o) then
    if redis.call('SISMEMBER', K_AHEAD, o) == 1 and redis.call('HGET', K_HELD, o) == node .. '|' .. epoch then
      redis.call('SREM', K_AHEAD, o) -- our own, claimed ahead: a call goes there now
      return 'OK'
    end
    if redis.call('SISMEMBER', K_AHEAD, o) == 1 then
      redis.call('SADD', K_WANTED, o)
      return redis.error_reply('CALLPARK_AHEAD')
    end
    return redis.error_reply('CALLPARK_INUSE')
  end
end
claim(o, node, epoch)
return 'OK'
