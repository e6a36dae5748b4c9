-- holder: ARGV orbit. Returns {node, advertise} of the live node holding
-- the orbit, or nil when it is free or its holder's lease ran out.
local o = ARGV[1]
local tag = redis.call('HGET', K_HELD, o)
if not tag then return nil end
local sep = string.find(tag, '|', 1, true)
local node, epoch = string.sub(tag, 1, sep - 1), string.sub(tag, sep + 1)
local info = redis.call('HMGET', node_key(node), 'epoch', 'advertise')
if info[1] ~= epoch then return nil end
local deadline = redis.call('ZSCORE', K_NODES, node)
if not deadline or tonumber(deadline) < now_ms() then return nil end
return { node, info[2] or '' }
