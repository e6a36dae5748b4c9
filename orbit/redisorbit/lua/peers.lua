-- peers: the live nodes, as {node, advertise, ...}.
local now, out = now_ms(), {}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', K_NODES, now, '+inf')) do
  out[#out + 1] = node
  out[#out + 1] = redis.call('HGET', node_key(node), 'advertise') or ''
end
return out
