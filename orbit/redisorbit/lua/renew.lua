-- renew: ARGV node, epoch, generation, lease_ms. Extends the node's lease
-- and reaps the nodes whose lease ran out. Returns the names reaped.
local node, epoch, generation, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
redis.call('ZADD', K_NODES, now + lease, node)
return reap(now)
