-- join: ARGV node, advertise, lease_ms. Starts a new incarnation of the
-- node: a new epoch, a fresh lease, and whatever an earlier incarnation
-- under the same name held is freed, never taken back. Returns
-- {epoch, generation}.
local node, advertise, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local generation = redis.call('HGET', K_CONFIG, 'generation')
if not generation then return redis.error_reply('CALLPARK_NOTABLE') end
local now = now_ms()
reap(now)
if redis.call('EXISTS', node_key(node)) == 1 then
  drop_node(node, now, 'rejoined')
end
local epoch = tostring(redis.call('INCR', K_EPOCH))
redis.call('HSET', node_key(node), 'epoch', epoch, 'advertise', advertise, 'joined', now, 'lease', lease)
redis.call('ZADD', K_NODES, now + lease, node)
return { epoch, generation }
