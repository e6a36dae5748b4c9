-- leave: ARGV node, epoch, generation. A node stopping cleanly frees what
-- its incarnation still holds and leaves at once, not after its lease.
local node, epoch, generation = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', K_CONFIG, 'generation') ~= generation then return 0 end
if redis.call('HGET', node_key(node), 'epoch') ~= epoch then return 0 end
drop_node(node, now_ms(), 'left')
return 1
