-- renew: ARGV node, epoch, generation, lease_ms. Extends the node's lease
-- (the reaper, not this, drops the nodes whose lease ran out).
local node, epoch, generation, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
redis.call('ZADD', K_NODES, now + lease, node)
return 'OK'
