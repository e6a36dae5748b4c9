-- holder: ARGV orbit. Returns {node, advertise} of the live node holding
-- the orbit, or nil when it is free or its holder's lease ran out;
-- CALLPARK_MOVING while its call waits for another node to take it over.
local o = ARGV[1]
local tag = redis.call('HGET', K_HELD, o)
if not tag then
  if redis.call('HEXISTS', K_ORPHANS, o) == 1 then return redis.error_reply('CALLPARK_MOVING') end
  return nil
end
local sep = string.find(tag, '|', 1, true)
local node, epoch = string.sub(tag, 1, sep - 1), string.sub(tag, sep + 1)
local info = redis.call('HMGET', node_key(node), 'epoch', 'advertise')
local deadline = redis.call('ZSCORE', K_NODES, node)
if info[1] ~= epoch or not deadline or tonumber(deadline) < now_ms() then
  -- Its node is gone: a call another node can take over soon will be.
  if portable(o) then return redis.error_reply('CALLPARK_MOVING') end
  return nil
end
return { node, info[2] or '' }
